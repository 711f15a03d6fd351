"""Jobs `build_actions` and `simulate_preferences` (paper sec. 3 data).

build_actions: per scene, the action set D (experts, random, augmented),
  the pairs, and a PNG rendering of every action in the store's image cache
  (what the browser UI shows).
simulate_preferences: build_actions, then the simulated inspector renders
  every action once (with tissue weights), judges every pair by its priority
  list and writes the answers to the store as 'simulated' votes
  (rlhf_tf.preferences.simulated_votes).
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
import jax
import numpy as np

from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import simulated_votes


def build_actions(config, workdir: str) -> dict:
  """Registers D and the pairs of every scene; renders each action once."""
  store = dataset.open_store(config, workdir)
  mesh = mesh_lib.make_mesh(config.get('mesh'))
  out = {}
  for spec in dataset.scene_specs(config):
    data = dataset.ensure_scene(store, spec, config)
    simulated_votes.cache_renders(store, data, config.render, mesh=mesh)
    out[spec.scene_id] = dict(actions=len(data.vertices),
                              pairs=len(data.pairs))
  print(json.dumps(out, indent=2))
  return out


def _answer_counts(answers) -> dict:
  return dict(tie_rate=inspector_lib.tie_rate(answers),
              left=answers.count('left'), right=answers.count('right'))


def simulate_preferences(config, workdir: str) -> dict:
  """D, pairs and the simulated inspector's votes for every scene.

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
    data = dataset.ensure_scene(store, spec, config)
    done = store.effective_votes(scene_id=spec.scene_id, source='simulated',
                                 inspector=config.inspector.name)
    if done:
      logging.info('scene %s already has %d simulated votes; skipped',
                   spec.scene_id, len(done))
      summary[spec.scene_id] = previous.get(spec.scene_id) or dict(
          votes=len(done), **_answer_counts([v.choice for v in done]))
      continue
    key = jax.random.fold_in(jax.random.key(config.inspector.seed),
                             dataset.scene_hash(spec.scene_id))
    crit, answers = simulated_votes.judge_scene(data, store, config, key,
                                                mesh=mesh)
    scores = inspector_lib.score(crit,
                                 inspector_lib.from_config(config.inspector))
    if distributed.is_primary():
      np.save(os.path.join(workdir, f'criteria_{spec.scene_id}.npy'), crit)
    experts = [i for i, p in enumerate(data.provenance) if p == 'expert']
    randoms = [i for i, p in enumerate(data.provenance) if p == 'random']
    summary[spec.scene_id] = dict(
        votes=len(answers), **_answer_counts(answers),
        expert_score_mean=float(scores[experts].mean()),
        random_score_median=float(np.median(scores[randoms])))
  summary['seconds'] = round(time.perf_counter() - t0, 2)
  if not distributed.is_primary():
    return summary
  with open(summary_path, 'w') as f:
    json.dump(summary, f, indent=2)
  print(json.dumps(summary, indent=2))
  return summary
