"""PPO rollouts with their rewards split over devices equal 1-device ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_agent_ppo as single  # tests/ is on sys.path (rootdir)

from rlhf_tf.agent import ppo, ppo_objective


@pytest.mark.parametrize(
    'reward_fn',
    [single.toy_reward, single.ensemble_reward],
    ids=['single', 'ensemble'],
)
@pytest.mark.parametrize('num', [16, 13])  # 13: padded to the devices
def test_score_rollout_sharded_equals_vmap(mesh, reward_fn, num):
  rng = np.random.default_rng(0)
  jh = jnp.asarray(rng.uniform(size=(3, 8, 8)), jnp.float32)
  actions = jnp.asarray(rng.uniform(size=(3, num, 4, 2)), jnp.float32)
  want = jax.vmap(reward_fn)(jh, actions)
  got = jax.jit(
      lambda j, a: ppo_objective.score_rollout(reward_fn, j, a, mesh)
  )(jh, actions)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_ppo_train_on_a_mesh_equals_one_device(mesh8):
  config = single.small_config(num_updates=3)
  _, jh, params = single.setup(config)
  key = jax.random.key(1)
  one = ppo.train(config, key, jh, params, params, single.ensemble_reward)
  eight = ppo.train(
      config, key, jh, params, params, single.ensemble_reward, mesh=mesh8
  )
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6),
      one,
      eight,
  )
