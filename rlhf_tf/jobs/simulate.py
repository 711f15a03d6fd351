"""Jobs `build_actions` and `simulate_preferences` (paper sec. 3 data).

build_actions: per scene, the action set D (experts, random, augmented),
  the pairs, and a PNG rendering of every action in the store's image cache
  (what the browser UI shows).
simulate_preferences: build_actions, then the simulated inspector renders
  every action once (with tissue weights), judges every pair by its priority
  list and writes the answers to the store as 'simulated' votes.
"""

from __future__ import annotations

import io
import json
import os
import time

from absl import logging
import jax
import ml_collections
import numpy as np
from PIL import Image
import tqdm

from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib


def render_key(config) -> str:
  """Names the view and TF settings a cached PNG was made with."""
  r = config.render
  return (f'vol-{r.image_size}px-az{r.azimuth:g}-el{r.elevation:g}-'
          f'zoom{r.zoom:g}-step{r.step_mm:g}-tau{r.tau:g}-a{r.alpha_max:g}-'
          f'shade{int(r.shading)}')


def png_bytes(rgba) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(scenes_lib.rgb_uint8(rgba)).save(buf, format='PNG')
  return buf.getvalue()


def default_inspector_config() -> ml_collections.ConfigDict:
  """config.inspector: the simulated inspector's name, tolerances, noise."""
  return ml_collections.ConfigDict(dict(
      name='simulated',
      tolerances=inspector_lib.InspectorConfig().tolerances,
      flip_prob=0.0, temperature=0.0, seed=0))


def inspector_config(cfg) -> inspector_lib.InspectorConfig:
  return inspector_lib.InspectorConfig(
      tolerances=tuple(cfg.tolerances), flip_prob=cfg.flip_prob,
      temperature=cfg.temperature)


def inspector_scores(scene, actions, cfg) -> np.ndarray:
  """The simulated inspector's score [A] of actions [A, n, 2] on a scene
  (the 'gold' reward of the evaluation and of the agent's monitor)."""
  crit = [judge_rendering(scene, v)[1]
          for v in np.asarray(actions, np.float32)]
  return inspector_lib.score(np.reshape(crit, (-1, len(
      inspector_lib.CRITERIA))), inspector_config(cfg))


def judge_rendering(scene, vertices):
  """(rgba [H, W, 4], the inspector's criteria (5,)) of one action."""
  rgba, weights, hits = scene.render_tissues(vertices)
  return rgba, inspector_lib.criteria(np.asarray(weights), np.asarray(hits),
                                      np.asarray(rgba))


def judge_scene(data: dataset.SceneData, store, config, key, progress=True):
  """Renders every action, judges all pairs; returns (criteria, answers)."""
  crit = []
  name = config.inspector.name
  for i in tqdm.trange(len(data.vertices), desc=f'render {data.scene.scene_id}',
                       disable=not progress):
    rgba, c = judge_rendering(data.scene, data.vertices[i])
    crit.append(c)
    store.add_render(data.scene.scene_id, i, render_key(config),
                     png_bytes(rgba))
  crit = np.stack(crit)
  answers = inspector_lib.judge_pairs(key, crit, data.pairs,
                                      inspector_config(config.inspector))
  store.record_votes([
      dict(scene_id=data.scene.scene_id, pair_id=int(pid),
           left_action=int(l), right_action=int(r), choice=a, inspector=name,
           source='simulated')
      for pid, (l, r), a in zip(data.pair_ids, data.pairs, answers)])
  return crit, answers


def build_actions(config, workdir: str) -> dict:
  """Registers D and the pairs of every scene; renders each action once."""
  store = dataset.open_store(config, workdir)
  out = {}
  for spec in dataset.scene_specs(config):
    data = dataset.ensure_scene(store, spec, config)
    for i in tqdm.trange(len(data.vertices), desc=f'render {spec.scene_id}'):
      store.add_render(spec.scene_id, i, render_key(config),
                       png_bytes(data.scene.render(data.vertices[i])))
    out[spec.scene_id] = dict(actions=len(data.vertices),
                              pairs=len(data.pairs))
  print(json.dumps(out, indent=2))
  return out


def simulate_preferences(config, workdir: str) -> dict:
  """D, pairs and the simulated inspector's votes for every scene.

  A scene that already has simulated votes from this inspector is skipped,
  so re-running the job adds nothing twice.
  """
  t0 = time.perf_counter()
  store = dataset.open_store(config, workdir)
  summary = {}
  for spec in dataset.scene_specs(config):
    data = dataset.ensure_scene(store, spec, config)
    done = store.effective_votes(scene_id=spec.scene_id, source='simulated',
                                 inspector=config.inspector.name)
    if done:
      logging.info('scene %s already has %d simulated votes; skipped',
                   spec.scene_id, len(done))
      continue
    key = jax.random.fold_in(jax.random.key(config.inspector.seed),
                             dataset.scene_hash(spec.scene_id))
    crit, answers = judge_scene(data, store, config, key)
    scores = inspector_lib.score(crit, inspector_config(config.inspector))
    np.save(os.path.join(workdir, f'criteria_{spec.scene_id}.npy'), crit)
    experts = [i for i, p in enumerate(data.provenance) if p == 'expert']
    randoms = [i for i, p in enumerate(data.provenance) if p == 'random']
    summary[spec.scene_id] = dict(
        votes=len(answers), tie_rate=inspector_lib.tie_rate(answers),
        left=answers.count('left'), right=answers.count('right'),
        expert_score_mean=float(scores[experts].mean()),
        random_score_median=float(np.median(scores[randoms])))
  summary['seconds'] = round(time.perf_counter() - t0, 2)
  with open(os.path.join(workdir, 'simulate_summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  print(json.dumps(summary, indent=2))
  return summary
