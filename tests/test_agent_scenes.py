"""The agent's training and held-out scenes are dataset scene lists; a
held-out scene never reaches the agent's training nor the reward's store."""

import os

import pytest

from rlhf_tf.agent import scene_split
from rlhf_tf.input_error import ConfigError
from rlhf_tf.jobs import experiment_file
from rlhf_tf.preferences import store as store_lib

EXPERIMENT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    'experiments',
    'agent_ppo.py',
)


def _config(arg=''):
  return experiment_file.load_config(EXPERIMENT + (':' + arg if arg else ''))


def _ids(specs):
  return [s.scene_id for s in specs]


@pytest.mark.parametrize('arg', ['', 'multiscene', 'smoke'])
def test_held_out_scenes_are_not_training_scenes(arg):
  train, held_out = scene_split.scene_lists(_config(arg))
  assert train and held_out
  assert not set(_ids(train)) & set(_ids(held_out))


def test_multiscene_trains_on_the_reward_dataset_and_holds_out_6_and_7():
  config = _config('multiscene')
  train, held_out = scene_split.scene_lists(config)
  shape = 'x'.join(str(s) for s in config.volume.shape)
  assert _ids(train) == [f'phantom-s{i}-{shape}' for i in range(6)]
  assert _ids(held_out)[:2] == [f'phantom-s{i}-{shape}' for i in (6, 7)]
  assert set(_ids(held_out)[2:]) <= {'cranium'}


def test_a_held_out_training_scene_is_refused_by_name():
  config = _config('smoke')
  config.agent.eval_scenes = 'phantom:1-2'
  config.agent.train_scenes = 'phantom:0-1'
  with pytest.raises(ConfigError, match='phantom-s1-24x24x24') as e:
    scene_split.scene_lists(config)
  assert 'agent.eval_scenes' in str(e.value)
  assert '\n' not in str(e.value)
  config.agent.train_scenes = ''  # The dataset's scenes: phantom 0 here.
  config.scenes = 'phantom:0+2'
  with pytest.raises(ConfigError, match='phantom-s2-24x24x24'):
    scene_split.scene_lists(config)


def test_no_held_out_scene_is_refused():
  config = _config('smoke')
  config.agent.eval_scenes = ''
  with pytest.raises(ConfigError, match='agent.eval_scenes'):
    scene_split.scene_lists(config)


@pytest.mark.parametrize('key', ['train_seeds', 'eval_seeds', 'eval_cranium'])
def test_the_old_seed_keys_are_refused_naming_the_key(key):
  config = _config('smoke')
  config.agent[key] = (0,)
  with pytest.raises(ConfigError, match=f'agent.{key}') as e:
    scene_split.scene_lists(config)
  assert '\n' not in str(e.value)


def test_a_held_out_scene_in_the_reward_store_is_refused(tmp_path):
  config = _config('smoke')
  _, held_out = scene_split.scene_lists(config)
  path = str(tmp_path / 'preferences.sqlite')
  scene_split.check_reward_scenes(path, held_out)  # No store: nothing seen.
  store = store_lib.PreferenceStore(path)
  store.add_scene('phantom-s0-24x24x24')
  store.close()
  scene_split.check_reward_scenes(path, held_out)  # A training scene: fine.
  store = store_lib.PreferenceStore(path)
  store.add_scene(held_out[0].scene_id)
  store.close()
  with pytest.raises(ConfigError, match=held_out[0].scene_id):
    scene_split.check_reward_scenes(path, held_out)
