"""Job `train_reward`: fit r(JH, action) to the store's preferences (sec. 3).

Reads the votes of every scene of the dataset config from the store (human
and simulated alike, ``config.data_source`` filters); when the store has
none and ``config.simulate_if_empty`` is set, runs the simulated inspector
first, so the experiment is self-contained on the built-in phantom. Then
trains every loss x seed (rlhf_tf.reward.train) in <workdir>/reward.
"""

from __future__ import annotations

import json
import os

from absl import logging

from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.jobs import simulate
from rlhf_tf.preferences import dataset
from rlhf_tf.reward import from_store
from rlhf_tf.reward import train


def load_training_data(config, workdir: str):
  """(scene ids, PreferenceData) for the dataset config, simulating votes
  into an empty store first when config.simulate_if_empty."""
  store = dataset.open_store(config, workdir)
  if not from_store.has_dataset_votes(store, config):
    scene_ids = [s.scene_id for s in dataset.scene_specs(config)]
    if not config.simulate_if_empty:
      raise ValueError(f'the store {dataset.store_path(config, workdir)} has '
                       f'no votes for scenes {scene_ids}')
    logging.info('no votes yet: running the simulated inspector')
    store.close()
    simulate.simulate_preferences(config, workdir)
    store = dataset.open_store(config, workdir)
  try:
    return from_store.dataset_preference_data(store, config)
  finally:
    store.close()


def train_reward(config, workdir: str) -> dict:
  scene_ids, data = load_training_data(config, workdir)
  logging.info('%d preferences (%d ties) over scenes %s', data.num_pairs,
               int((data.target == 0.5).sum()), scene_ids)
  summary = train.train_and_evaluate(
      config.reward, os.path.join(workdir, 'reward'), data,
      mesh=mesh_lib.make_mesh(config.get('mesh')))
  print(json.dumps({loss: s['final'] for loss, s in
                    summary['selected'].items()}, indent=2))
  return summary
