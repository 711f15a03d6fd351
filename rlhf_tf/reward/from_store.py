"""Training data for the reward model from the preference store.

Human and simulated votes are read the same way: the store's effective votes
(undone votes and skips removed) become (scene, left, right, target) with
target = 1 (left preferred), 0 (right) or 1/2 (equal: mu uniform, eq. 4). A
'both_bad' answer is a tie too, or left out, as ``config.both_bad`` says
('tie' | 'drop').
``dataset_preference_data`` reads the scenes of a dataset config
(``preferences.dataset``), filtered by ``config.data_source``;
``load_training_data`` first fills an empty store with the simulated
inspector's votes when ``config.simulate_if_empty``; ``train_on_store``
trains every loss x seed (``reward.train``) on them in <workdir>/reward.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from absl import logging
import ml_collections
import numpy as np

from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.preferences import dataset, simulated_votes
from rlhf_tf.preferences import store as store_lib
from rlhf_tf.reward import data as data_lib
from rlhf_tf.reward import train


def preference_data(
    store: store_lib.PreferenceStore,
    scene_ids: Sequence[str],
    jh_by_scene: Sequence[np.ndarray],
    source: Optional[str] = None,
    inspector: Optional[str] = None,
    both_bad: str = 'tie',
) -> data_lib.PreferenceData:
  """PreferenceData of the given scenes (in that order).

  Args:
    store: the preference store.
    scene_ids: scenes to read; their index is the scene index in the data.
    jh_by_scene: the JH image [B, B] of each scene.
    source: 'human' | 'simulated' | None (both).
    inspector: only this inspector's votes (None: all).
    both_bad: 'tie' (a 'both_bad' answer is a tie, target 1/2) | 'drop'.

  Raises:
    ValueError: when the scenes hold no usable vote (names the scenes).
  """
  examples = []
  for k, scene_id in enumerate(scene_ids):
    for e in store.training_examples(
        scene_id, source=source, inspector=inspector, both_bad=both_bad
    ):
      examples.append((k, e.left_action, e.right_action, e.target))
  if not examples:
    raise ValueError(
        f'no votes (source={source}, inspector={inspector}) in '
        f'scenes {list(scene_ids)} of the store'
    )
  actions = [store.vertices_array(s) for s in scene_ids]
  return data_lib.from_examples(list(jh_by_scene), actions, examples)


def _source(config: ml_collections.ConfigDict) -> Optional[str]:
  """config.data_source: '' = human and simulated, or 'human'/'simulated'."""
  return config.data_source or None


def has_dataset_votes(
    store: store_lib.PreferenceStore, config: ml_collections.ConfigDict
) -> bool:
  """Whether a scene of the dataset config has a vote of config.data_source."""
  scene_ids = [s.scene_id for s in dataset.scene_specs(config)]
  have = [s['scene_id'] for s in store.scenes()]
  return any(
      store.training_examples(
          s, source=_source(config), both_bad=config.both_bad
      )
      for s in scene_ids
      if s in have
  )


def dataset_preference_data(
    store: store_lib.PreferenceStore, config: ml_collections.ConfigDict
) -> tuple[list[str], data_lib.PreferenceData]:
  """(scene ids, PreferenceData) of every scene of the dataset config, the
  JHs recomputed from the volumes the store recorded."""
  scene_ids = [s.scene_id for s in dataset.scene_specs(config)]
  jhs = [dataset.scene_jh(store, s).image for s in scene_ids]
  return scene_ids, preference_data(
      store, scene_ids, jhs, source=_source(config), both_bad=config.both_bad
  )


def load_training_data(
    config, workdir: str
) -> tuple[list[str], data_lib.PreferenceData]:
  """(scene ids, PreferenceData) for the dataset config, simulating votes
  into an empty store first when config.simulate_if_empty."""
  store = dataset.open_store(config, workdir)
  if not distributed.on_primary(lambda: has_dataset_votes(store, config)):
    scene_ids = [s.scene_id for s in dataset.scene_specs(config)]
    if not config.simulate_if_empty:
      raise ValueError(
          f'the store {dataset.store_path(config, workdir)} has '
          f'no votes for scenes {scene_ids}'
      )
    logging.info('no votes yet: running the simulated inspector')
    store.close()
    simulated_votes.simulate_dataset(config, workdir)
    store = dataset.open_store(config, workdir)
  try:
    return distributed.on_primary(
        lambda: dataset_preference_data(store, config)
    )
  finally:
    store.close()


def train_on_store(config, workdir: str) -> dict:
  """Trains config.reward (every loss x seed) on the store's votes of the
  dataset config into <workdir>/reward; returns train.py's summary."""
  scene_ids, data = load_training_data(config, workdir)
  logging.info(
      '%d preferences (%d ties) over scenes %s',
      data.num_pairs,
      int((data.target == 0.5).sum()),
      scene_ids,
  )
  return train.train_and_evaluate(
      config.reward,
      os.path.join(workdir, 'reward'),
      data,
      mesh=mesh_lib.make_mesh(config.get('mesh')),
  )
