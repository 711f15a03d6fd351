"""The simulated inspector's votes on a dataset scene, written to the store.

Every action of the scene is rendered once with its tissue weights; the
rendering goes to the store's image cache (what the browser UI shows) and its
criteria (``inspector.criteria``) decide every pair by the priority list. The
answers are recorded as 'simulated' votes under ``config.inspector.name``.
"""

from __future__ import annotations

import numpy as np
import tqdm

from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.preferences import store as store_lib


def cache_renders(store: store_lib.PreferenceStore, data: dataset.SceneData,
                  render_cfg, progress: bool = True) -> None:
  """Renders every action of a scene once into the store's image cache."""
  key = scenes_lib.render_key(render_cfg)
  scene_id = data.scene.scene_id
  for i in tqdm.trange(len(data.vertices), desc=f'render {scene_id}',
                       disable=not progress):
    store.add_render(scene_id, i, key,
                     scenes_lib.png_bytes(data.scene.render(data.vertices[i])))


def judge_scene(data: dataset.SceneData, store: store_lib.PreferenceStore,
                config, key, progress: bool = True):
  """Renders every action, judges all pairs and records the votes.

  Args:
    data: the scene with its actions and pairs (``dataset.ensure_scene``).
    store: the preference store the scene is registered in.
    config: a dataset config with ``render`` and ``inspector`` blocks.
    key: PRNG key of the inspector's human-like noise.
    progress: show a progress bar.

  Returns:
    (criteria [A, 5] of every action, the P answers in pair order).
  """
  crit = []
  scene_id = data.scene.scene_id
  render_key = scenes_lib.render_key(config.render)
  for i in tqdm.trange(len(data.vertices), desc=f'render {scene_id}',
                       disable=not progress):
    rgba, c = inspector_lib.judge_rendering(data.scene, data.vertices[i])
    crit.append(c)
    store.add_render(scene_id, i, render_key, scenes_lib.png_bytes(rgba))
  crit = np.stack(crit)
  answers = inspector_lib.judge_pairs(
      key, crit, data.pairs, inspector_lib.from_config(config.inspector))
  store.record_votes([
      dict(scene_id=scene_id, pair_id=int(pid), left_action=int(l),
           right_action=int(r), choice=a, inspector=config.inspector.name,
           source='simulated')
      for pid, (l, r), a in zip(data.pair_ids, data.pairs, answers)])
  return crit, answers
