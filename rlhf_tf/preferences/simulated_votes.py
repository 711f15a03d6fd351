"""The simulated inspector's votes on a dataset scene, written to the store.

Every action of the scene is rendered once with its tissue weights; the
rendering goes to the store's image cache (what the browser UI shows) and its
criteria (``inspector.criteria``) decide every pair by the priority list. The
answers are recorded as 'simulated' votes under ``config.inspector.name``.
``simulate_dataset`` does so for every scene of a dataset config, with a
summary (votes, tie rate, expert and random scores) per scene.
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
import jax
import numpy as np
import tqdm

from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.preferences import store as store_lib


def cache_renders(
    store: store_lib.PreferenceStore,
    data: dataset.SceneData,
    render_cfg,
    progress: bool = True,
    mesh=None,
) -> None:
  """Renders every action of a scene once into the store's image cache
  (the actions split over ``mesh``'s devices; process 0 writes)."""
  key = scenes_lib.render_key(render_cfg)
  scene_id = data.scene.scene_id
  with tqdm.tqdm(
      total=len(data.vertices), desc=f'render {scene_id}', disable=not progress
  ) as bar:
    for start, (rgba,) in data.scene.iter_render_many(data.vertices, mesh=mesh):
      if distributed.is_primary():
        for k, image in enumerate(rgba):
          store.add_render(
              scene_id, start + k, key, scenes_lib.png_bytes(image)
          )
      bar.update(len(rgba))


def judge_scene(
    data: dataset.SceneData,
    store: store_lib.PreferenceStore,
    config,
    key,
    progress: bool = True,
    mesh=None,
):
  """Renders every action, judges all pairs and records the votes.

  Args:
    data: the scene with its actions and pairs (``dataset.ensure_scene``).
    store: the preference store the scene is registered in.
    config: a dataset config with ``render`` and ``inspector`` blocks.
    key: PRNG key of the inspector's human-like noise.
    progress: show a progress bar.
    mesh: optional jax.sharding.Mesh: the renderings are split over its
      'data' axis (every process judges; process 0 writes the store).

  Returns:
    (criteria [A, 5] of every action, the P answers in pair order).
  """
  crit = []
  scene_id = data.scene.scene_id
  render_key = scenes_lib.render_key(config.render)
  primary = distributed.is_primary()
  with tqdm.tqdm(
      total=len(data.vertices), desc=f'render {scene_id}', disable=not progress
  ) as bar:
    for start, (rgba, weights, hits) in data.scene.iter_render_many(
        data.vertices, tissue_weights=True, mesh=mesh
    ):
      for k in range(len(rgba)):
        crit.append(inspector_lib.criteria(weights[k], hits[k], rgba[k]))
        if primary:
          store.add_render(
              scene_id, start + k, render_key, scenes_lib.png_bytes(rgba[k])
          )
      bar.update(len(rgba))
  crit = np.stack(crit)
  answers = inspector_lib.judge_pairs(
      key, crit, data.pairs, inspector_lib.from_config(config.inspector)
  )
  if not primary:
    return crit, answers
  store.record_votes(
      [
          dict(
              scene_id=scene_id,
              pair_id=int(pid),
              left_action=int(l),
              right_action=int(r),
              choice=a,
              inspector=config.inspector.name,
              source='simulated',
          )
          for pid, (l, r), a in zip(data.pair_ids, data.pairs, answers)
      ]
  )
  return crit, answers


def _answer_counts(answers) -> dict:
  return dict(
      tie_rate=inspector_lib.tie_rate(answers),
      left=answers.count('left'),
      right=answers.count('right'),
  )


def simulate_dataset(config, workdir: str) -> dict:
  """D, pairs and the simulated inspector's votes for every scene of the
  dataset config, in the store of ``workdir`` (job `simulate_preferences`).

  A scene that already has simulated votes from this inspector is skipped,
  so re-running the job adds nothing twice; its line of the summary is kept
  from the last run (or, after a kill before the summary was written,
  recounted from the stored votes).
  """
  t0 = time.perf_counter()
  store = dataset.open_store(config, workdir)
  mesh = mesh_lib.make_mesh(config.get('mesh'))
  summary = {}
  summary_path = os.path.join(workdir, 'simulate_summary.json')
  previous = {}
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      previous = json.load(f)
  for spec in dataset.scene_specs(config):
    data = dataset.ensure_scene(store, spec, config, mesh=mesh)
    done = distributed.on_primary(
        lambda: store.effective_votes(
            scene_id=spec.scene_id,
            source='simulated',
            inspector=config.inspector.name,
        )
    )
    if done:
      logging.info(
          'scene %s already has %d simulated votes; skipped',
          spec.scene_id,
          len(done),
      )
      summary[spec.scene_id] = previous.get(spec.scene_id) or dict(
          votes=len(done), **_answer_counts([v.choice for v in done])
      )
      continue
    key = jax.random.fold_in(
        jax.random.key(config.inspector.seed), dataset.scene_hash(spec.scene_id)
    )
    crit, answers = judge_scene(data, store, config, key, mesh=mesh)
    scores = inspector_lib.score(
        crit, inspector_lib.from_config(config.inspector)
    )
    if distributed.is_primary():
      np.save(os.path.join(workdir, f'criteria_{spec.scene_id}.npy'), crit)
    experts = [i for i, p in enumerate(data.provenance) if p == 'expert']
    randoms = [i for i, p in enumerate(data.provenance) if p == 'random']
    summary[spec.scene_id] = dict(
        votes=len(answers),
        **_answer_counts(answers),
        expert_score_mean=float(scores[experts].mean()),
        random_score_median=float(np.median(scores[randoms])),
    )
  summary['seconds'] = round(time.perf_counter() - t0, 2)
  store.close()
  if distributed.is_primary():
    with open(summary_path, 'w') as f:
      json.dump(summary, f, indent=2)
  # Process 0's votes are in the store before any process goes on (reward
  # training reads them next).
  distributed.barrier('simulate_dataset done')
  return summary
