"""The sharded paths the two-process test runs, shared with its reference.

``sharded_paths(mesh, workdir)`` runs on any mesh (or None = one device):
the two-process worker calls it on a mesh spanning both processes, the test
on one device, and the two must agree.
"""

import jax
import numpy as np
from reward_testing import BINS, tiny_model
import test_reward_train as reward_tests

from rlhf_tf.evaluation import probing
from rlhf_tf.reward import predict, train

BASE = np.array([[0.2, 0.1], [0.7, 0.15], [0.75, 0.6], [0.25, 0.5]], np.float32)


def sharded_paths(mesh, workdir: str) -> dict:
  model, params, jh = tiny_model()
  _, rewards = probing.random_action_rewards(
      model, params, jh, jax.random.key(2), num=20000, mesh=mesh
  )
  maps = probing.corner_maps(model, params, jh, BASE, grid=BINS, mesh=mesh)
  config = reward_tests.tiny_config(num_epochs=2)
  summary = train.train_and_evaluate(
      config, workdir, reward_tests.synthetic_task(), mesh=mesh
  )
  return dict(
      rewards=np.asarray(rewards),
      maps=np.asarray(maps),
      summary=summary['runs'],
  )


def train_resumed(mesh, workdir: str) -> dict:
  """sharded_paths' training stopped after epoch 1, then resumed to 2."""
  task = reward_tests.synthetic_task()
  train.train_and_evaluate(
      reward_tests.tiny_config(num_epochs=1), workdir, task, mesh=mesh
  )
  return train.train_and_evaluate(
      reward_tests.tiny_config(num_epochs=2), workdir, task, mesh=mesh
  )


def assert_same_params(workdir_a: str, workdir_b: str) -> None:
  for k in range(2):
    jax.tree_util.tree_map(
        np.testing.assert_array_equal,
        predict.load_params(workdir_a, 'ce', k),
        predict.load_params(workdir_b, 'ce', k),
    )
