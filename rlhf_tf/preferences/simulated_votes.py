"""The simulated inspector's votes on a dataset scene, written to the store.

Every action of the scene is rendered once with its tissue weights; the
rendering goes to the store's image cache (what the browser UI shows) and its
criteria (``inspector.criteria``) decide every pair by the priority list. The
answers are recorded as 'simulated' votes under ``config.inspector.name``.
"""

from __future__ import annotations

import numpy as np
import tqdm

from rlhf_tf.devices import distributed
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.preferences import store as store_lib


def cache_renders(store: store_lib.PreferenceStore, data: dataset.SceneData,
                  render_cfg, progress: bool = True, mesh=None) -> None:
  """Renders every action of a scene once into the store's image cache
  (the actions split over ``mesh``'s devices; process 0 writes)."""
  key = scenes_lib.render_key(render_cfg)
  scene_id = data.scene.scene_id
  with tqdm.tqdm(total=len(data.vertices), desc=f'render {scene_id}',
                 disable=not progress) as bar:
    for start, (rgba,) in data.scene.iter_render_many(data.vertices,
                                                      mesh=mesh):
      if distributed.is_primary():
        for k, image in enumerate(rgba):
          store.add_render(scene_id, start + k, key,
                           scenes_lib.png_bytes(image))
      bar.update(len(rgba))


def judge_scene(data: dataset.SceneData, store: store_lib.PreferenceStore,
                config, key, progress: bool = True, mesh=None):
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
  with tqdm.tqdm(total=len(data.vertices), desc=f'render {scene_id}',
                 disable=not progress) as bar:
    for start, (rgba, weights, hits) in data.scene.iter_render_many(
        data.vertices, tissue_weights=True, mesh=mesh):
      for k in range(len(rgba)):
        crit.append(inspector_lib.criteria(weights[k], hits[k], rgba[k]))
        if primary:
          store.add_render(scene_id, start + k, render_key,
                           scenes_lib.png_bytes(rgba[k]))
      bar.update(len(rgba))
  crit = np.stack(crit)
  answers = inspector_lib.judge_pairs(
      key, crit, data.pairs, inspector_lib.from_config(config.inspector))
  if not primary:
    return crit, answers
  store.record_votes([
      dict(scene_id=scene_id, pair_id=int(pid), left_action=int(l),
           right_action=int(r), choice=a, inspector=config.inspector.name,
           source='simulated')
      for pid, (l, r), a in zip(data.pair_ids, data.pairs, answers)])
  return crit, answers
