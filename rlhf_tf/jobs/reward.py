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
import ml_collections

from rlhf_tf.jobs import simulate
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
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
  summary = train.train_and_evaluate(config.reward,
                                     os.path.join(workdir, 'reward'), data)
  print(json.dumps({loss: s['final'] for loss, s in
                    summary['selected'].items()}, indent=2))
  return summary


def experiment_config(losses, smoke: bool = False) -> ml_collections.ConfigDict:
  """The config of a train_reward experiment (experiments/reward_*.py)."""
  config = dataset.dataset_config()
  config.job = 'train_reward'
  config.data_source = ''  # '' = human and simulated | 'human' | 'simulated'
  config.simulate_if_empty = True
  config.inspector = inspector_lib.default_config()
  config.reward = train.get_config()
  config.reward.losses = tuple(losses)
  if smoke:
    dataset.shrink_for_smoke(config)
    shrink_reward_for_smoke(config.reward)
  return config


def shrink_reward_for_smoke(reward: ml_collections.ConfigDict) -> None:
  """2 epochs, 2 seeds, a tiny model."""
  reward.num_epochs = 2
  reward.num_seeds = 2
  reward.batch_size = 16
  reward.model.conv_features = (4, 4, 4)
  reward.model.strides = (2, 2, 2)
  reward.model.input_pool = 1
  reward.model.readout_pool = 1
  reward.model.action_features = (8, 16)
  reward.model.hidden = (16, 8)
