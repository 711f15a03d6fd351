"""The agent's scenes: those it trains on, and the held-out ones it is
evaluated on, which neither it nor its reward model has seen (sec. 6).

Both are dataset scene lists (preferences/dataset.py's syntax, e.g.
'phantom:0-5' or 'phantom:6-7,cranium'): the agent trains on
``agent.train_scenes`` ('' = the dataset's own, ``config.scenes``, which the
reward trains on when the agent's run trains it) and is evaluated on
``agent.eval_scenes``, which must share no scene with its training scenes
(``scene_lists``) nor with the reward's preference store
(``check_reward_scenes``).
"""

from __future__ import annotations

import os

from rlhf_tf.devices import distributed
from rlhf_tf.input_error import ConfigError
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import store as store_lib

# Config keys the scene lists replaced: refused, so an old config that sets
# them does not silently train or evaluate on other scenes.
_GONE_KEYS = ('train_seeds', 'eval_seeds', 'eval_cranium')


def _specs(config, scenes: str) -> list[dataset.SceneSpec]:
  """The scene specs of a dataset scene list ('' = config.scenes')."""
  if not scenes:
    return dataset.scene_specs(config)
  with config.unlocked():
    listed = config.copy_and_resolve_references()
    listed.scenes = scenes
  return dataset.scene_specs(listed)


def scene_lists(config) -> tuple[list, list]:
  """(training, held-out) scene specs of the agent.

  Raises:
    ConfigError: naming a replaced key (agent.train_seeds, ...), an empty
      agent.eval_scenes, or a held-out scene that is also a training one.
  """
  a = config.agent
  for key in _GONE_KEYS:
    if key in a:
      raise ConfigError(
          f'agent.{key} is no longer read: name the scenes in '
          "agent.train_scenes / agent.eval_scenes (e.g. 'phantom:0-5' and "
          "'phantom:6-7,cranium')"
      )
  train = _specs(config, a.train_scenes)
  if not a.eval_scenes:
    raise ConfigError(
        "agent.eval_scenes is empty: name held-out scenes, e.g. 'phantom:7'"
    )
  held_out = _specs(config, a.eval_scenes)
  both = sorted({s.scene_id for s in train} & {s.scene_id for s in held_out})
  if both:
    raise ConfigError(
        f'agent.eval_scenes: {", ".join(both)} also in the training scenes '
        f'(agent.train_scenes={a.train_scenes!r}, scenes='
        f'{config.get("scenes", "")!r}); held-out scenes must stay unseen'
    )
  return train, held_out


def reward_scene_ids(store_path: str) -> list[str]:
  """Scene ids in the reward's preference store (every scene the reward
  may have trained on); [] without a store."""
  if not os.path.isfile(store_path):
    return []
  store = store_lib.PreferenceStore(store_path)
  try:
    return [s['scene_id'] for s in store.scenes()]
  finally:
    store.close()


def check_reward_scenes(store_path: str, held_out) -> None:
  """Refuses held-out scenes that the reward's preference store holds."""
  stored = distributed.on_primary(lambda: reward_scene_ids(store_path))
  seen = sorted(set(stored) & {s.scene_id for s in held_out})
  if seen:
    raise ConfigError(
        f'agent.eval_scenes: {", ".join(seen)} in the reward\'s store '
        f'{store_path}; held-out scenes must stay unseen by the reward too'
    )
