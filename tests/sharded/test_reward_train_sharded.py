"""Reward training data-parallel over pairs equals 1-device training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_reward_train as single  # tests/ is on sys.path (rootdir)

from rlhf_tf.reward import losses as losses_lib
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward import predict, train, train_step


@pytest.fixture(scope='module')
def task():
  return single.synthetic_task()


def _first_step_gradient(task, loss, batch_size, mesh):
  """Adam's first moment after one step = (1 - b1) x the gradient."""
  config = single.tiny_config()
  model = model_lib.model_from_config(config.model)
  data = jax.tree_util.tree_map(jnp.asarray, task)
  keys = train_step.seed_keys(config)
  idx, w = train_step.epoch_indices(
      keys, jnp.int32(0), num_pairs=data.num_pairs, batch_size=batch_size
  )
  states = train_step.init_states(
      keys, losses_lib.initial_loss_params(loss), model=model, bins=data.bins
  )
  states, step_loss = train_step.train_step(
      states,
      keys,
      idx[:, 0],
      w[:, 0],
      data,
      jnp.float32(1e-3),
      model=model,
      loss_name=loss,
      mesh=mesh,
  )
  return states.opt_state[0].mu, step_loss


# batch 32: the [2 scenes x 12 actions] reward table (24 <= 64 members);
# batch 8: the 16 pair members scored directly (batch_rewards.use_table).
@pytest.mark.parametrize(
    'loss,batch_size',
    [('ce', 32), ('davidson', 32), ('nll', 8), ('davidson', 8)],
)
def test_step_gradient_equals_one_device(task, mesh8, loss, batch_size):
  mu1, loss1 = _first_step_gradient(task, loss, batch_size, None)
  mu8, loss8 = _first_step_gradient(task, loss, batch_size, mesh8)
  np.testing.assert_allclose(loss8, loss1, rtol=1e-6)
  scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(mu1))
  for a, b in zip(jax.tree.leaves(mu1), jax.tree.leaves(mu8)):
    # float32 rounding of sums in another order, relative to the largest
    # gradient entry (a mathematically zero entry, e.g. the head bias of
    # a pairwise loss, is rounding noise in both).
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale)
  assert scale > 1e-4


def test_training_run_and_resume_on_a_mesh(tmp_path, task, mesh8):
  """Two epochs data-parallel reach the 1-device metrics, and a run resumed
  from its (replicated, orbax) checkpoint is bit-identical to one that was
  not interrupted."""
  config = single.tiny_config(losses=('davidson',))
  one = train.train_and_evaluate(config, str(tmp_path / 'one'), task)
  full = train.train_and_evaluate(
      config, str(tmp_path / 'full'), task, mesh=mesh8
  )
  for loss in ('davidson',):
    for k in range(2):
      a, b = one['runs'][loss][f'seed_{k}'], full['runs'][loss][f'seed_{k}']
      for key in ('train_loss', 'heldout_ce', 'heldout_nll', 'train_ce'):
        assert abs(a[key] - b[key]) < 2e-3, (loss, k, key, a[key], b[key])
  config.num_epochs = 1
  train.train_and_evaluate(config, str(tmp_path / 'resumed'), task, mesh=mesh8)
  config.num_epochs = 2
  resumed = train.train_and_evaluate(
      config, str(tmp_path / 'resumed'), task, mesh=mesh8
  )
  assert resumed['runs'] == full['runs']
  for loss in ('davidson',):
    for k in range(2):
      jax.tree_util.tree_map(
          np.testing.assert_array_equal,
          predict.load_params(str(tmp_path / 'full'), loss, k),
          predict.load_params(str(tmp_path / 'resumed'), loss, k),
      )
