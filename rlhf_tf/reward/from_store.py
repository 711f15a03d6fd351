"""Training data for the reward model from the preference store.

Human and simulated votes are read the same way: the store's effective votes
(undone votes and skips removed) become (scene, left, right, target) with
target = 1 (left preferred), 0 (right) or 1/2 (equal: mu uniform, eq. 4).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from rlhf_tf.preferences import store as store_lib
from rlhf_tf.reward import data as data_lib


def preference_data(store: store_lib.PreferenceStore,
                    scene_ids: Sequence[str],
                    jh_by_scene: Sequence[np.ndarray],
                    source: Optional[str] = None,
                    inspector: Optional[str] = None
                    ) -> data_lib.PreferenceData:
  """PreferenceData of the given scenes (in that order).

  Args:
    store: the preference store.
    scene_ids: scenes to read; their index is the scene index in the data.
    jh_by_scene: the JH image [B, B] of each scene.
    source: 'human' | 'simulated' | None (both).
    inspector: only this inspector's votes (None: all).

  Raises:
    ValueError: when the scenes hold no usable vote (names the scenes).
  """
  examples = []
  for k, scene_id in enumerate(scene_ids):
    for e in store.training_examples(scene_id, source=source,
                                     inspector=inspector):
      examples.append((k, e.left_action, e.right_action, e.target))
  if not examples:
    raise ValueError(f'no votes (source={source}, inspector={inspector}) in '
                     f'scenes {list(scene_ids)} of the store')
  actions = [store.vertices_array(s) for s in scene_ids]
  return data_lib.from_examples(list(jh_by_scene), actions, examples)
