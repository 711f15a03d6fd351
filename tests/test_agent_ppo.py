"""Tests for rlhf_tf.agent.ppo (contextual-bandit PPO with a KL penalty)."""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhf_tf.agent import policy, ppo, ppo_objective
from rlhf_tf.evaluation import figures_agent

BINS = 16
TARGET = jnp.array([0.75, 0.3])


def small_config(**kw):
  c = ppo.default_config()
  c.policy.pool_to = 16
  c.policy.features = (4,)
  c.policy.hidden = 32
  c.num_updates = 6
  c.batch_per_scene = 16
  c.num_epochs = 2
  c.num_minibatches = 2
  c.lr = 3e-3
  c.kl_beta = 0.01
  c.ent_coef = 0.001
  for k, v in kw.items():
    setattr(c, k, v)
  return c


def toy_reward(jh, actions):
  """-||centroid(a) - target||^2: [N, n, 2] -> [N]."""
  del jh
  return -jnp.sum((jnp.mean(actions, axis=-2) - TARGET) ** 2, axis=-1)


def ensemble_reward(jh, actions):
  """Three perturbed copies of toy_reward: [M=3, N]."""
  r = toy_reward(jh, actions)
  return jnp.stack([r, 0.8 * r + 0.01, 1.3 * r - 0.02 * actions[:, 0, 0]])


def setup(config, scenes=2):
  net = policy.net_from_config(config.policy)
  rng = np.random.default_rng(11)
  jh = jnp.asarray(rng.uniform(size=(scenes, BINS, BINS)), jnp.float32)
  params = policy.init_params(net, jax.random.key(0), BINS)
  return net, jh, params


def perturb(params, seed, scale):
  """params + scale * N(0, 1) noise (numpy: no per-shape compiles)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda x: x + jnp.asarray(scale * rng.normal(size=x.shape), x.dtype),
      params,
  )


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def np_gauss_logp(u, mu, log_std):
  u, mu, log_std = (np.asarray(t, np.float64) for t in (u, mu, log_std))
  z = (u - mu) / np.exp(log_std)
  return np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def test_rollout_and_loss_match_numpy_hand_computation():
  config = small_config(
      kl_beta=0.3, ensemble_k=0.7, clip_eps=0.1, vf_coef=0.6, ent_coef=0.05
  )
  net, jh, params = setup(config)
  ref = perturb(params, 1, 0.05)
  rollout = jax.jit(ppo_objective.rollout, static_argnums=(0, 1, 5))
  batch, info = rollout(
      net,
      ppo._freeze(config),
      params,
      ref,
      jh,
      ensemble_reward,
      jax.random.key(2),
  )
  s, n, d = 2, config.batch_per_scene, 8
  apply = jax.jit(net.apply)
  mu, log_std, value = (np.asarray(t, np.float64) for t in apply(params, jh))
  mu_r, log_std_r, _ = (np.asarray(t, np.float64) for t in apply(ref, jh))
  u = np.asarray(batch.u, np.float64).reshape(s, n, d)
  noise = np.asarray(batch.noise, np.float64).reshape(s, n, d)
  np.testing.assert_allclose(
      u, mu[:, None] + np.exp(log_std)[:, None] * noise, rtol=1e-5, atol=1e-5
  )
  # Conservative ensemble reward, KL shaping (Ziegler), advantages.
  actions = policy.to_polygon(jnp.asarray(u, jnp.float32), 4)
  r = np.stack(
      [
          np.asarray(ensemble_reward(jh[i], actions[i]), np.float64)
          for i in range(s)
      ]
  )  # [S, M, N]
  r_cons = r.mean(1) - 0.7 * r.std(1)
  logp_old = np_gauss_logp(u, mu[:, None], log_std[:, None])
  logp_ref = np_gauss_logp(u, mu_r[:, None], log_std_r[:, None])
  target = r_cons - 0.3 * (logp_old - logp_ref)
  adv = target - value[:, None]
  adv = (adv - adv.mean()) / (adv.std() + 1e-8)
  np.testing.assert_allclose(batch.logp_old, logp_old.reshape(-1), rtol=1e-5)
  np.testing.assert_allclose(
      batch.target, target.reshape(-1), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(batch.adv, adv.reshape(-1), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(
      info['kl'], np.mean(logp_old - logp_ref), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(info['reward_used'], r_cons.mean(), rtol=1e-5)
  np.testing.assert_array_equal(batch.scene, np.repeat(np.arange(s), n))
  # Loss of new parameters on a minibatch of the rollout.
  new = perturb(params, 3, 0.02)
  idx = np.arange(0, s * n, 2)
  mb = jax.tree.map(lambda x: x[idx], batch)
  loss, aux = jax.jit(ppo_objective.ppo_loss, static_argnums=(1,))(
      new, net, jh, mb, 0.1, 0.6, 0.05
  )
  mu_n, log_std_n, value_n = (
      np.asarray(t, np.float64)[np.asarray(mb.scene)] for t in apply(new, jh)
  )
  ratio = np.exp(
      np_gauss_logp(mb.u, mu_n, log_std_n) - np.asarray(mb.logp_old, np.float64)
  )
  a = np.asarray(mb.adv, np.float64)
  pg = -np.mean(np.minimum(ratio * a, np.clip(ratio, 0.9, 1.1) * a))
  v_loss = 0.5 * np.mean((value_n - np.asarray(mb.target, np.float64)) ** 2)
  z = mu_n + np.exp(log_std_n) * np.asarray(mb.noise, np.float64)
  log_sig = lambda t: -np.logaddexp(0.0, -t)
  ent = np.mean(
      np.sum(log_std_n + 0.5 * (1 + np.log(2 * np.pi)), -1)
      + np.sum(log_sig(z) + log_sig(-z), -1)
  )
  clip_frac = np.mean(np.abs(ratio - 1) > 0.1)
  assert 0.0 < clip_frac < 1.0, clip_frac  # both branches exercised
  np.testing.assert_allclose(aux['policy_loss'], pg, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(aux['value_loss'], v_loss, rtol=1e-4)
  np.testing.assert_allclose(aux['entropy_bonus'], ent, rtol=1e-4)
  np.testing.assert_allclose(aux['clip_frac'], clip_frac)
  np.testing.assert_allclose(
      loss, pg + 0.6 * v_loss - 0.05 * ent, rtol=1e-4, atol=1e-6
  )


def test_combine_ensemble():
  r = jnp.array([[[1.0, 2.0], [3.0, 2.0]]])  # [S=1, M=2, N=2]
  mean, cons, std = ppo_objective.combine_ensemble(r, 2.0)
  np.testing.assert_allclose(mean, [[2.0, 2.0]])
  np.testing.assert_allclose(std, [[1.0, 0.0]])
  np.testing.assert_allclose(cons, [[0.0, 2.0]])
  single = jnp.ones((1, 3))
  assert all(
      x.shape == (1, 3) for x in ppo_objective.combine_ensemble(single, 2.0)
  )


@pytest.fixture(scope='module')
def unpenalised_run():
  config = small_config(num_updates=40, kl_beta=0.0, ent_coef=0.0)
  _, jh, params = setup(config)
  final, m = ppo.train(
      config, jax.random.key(0), jh, params, params, toy_reward
  )
  return config, jh, params, final, m


def test_ppo_improves_toy_reward(unpenalised_run):
  config, jh, _, final, m = unpenalised_run
  reward = np.asarray(m['reward'])
  assert reward.shape == (40,)
  assert np.mean(reward[-5:]) > 0.2 * np.mean(reward[:5]), reward  # 5x closer
  net = policy.net_from_config(config.policy)
  centroid = np.asarray(policy.mode(net, final, jh)).mean(-2)
  np.testing.assert_allclose(
      centroid, np.broadcast_to(TARGET, (2, 2)), atol=0.1
  )
  for k in (
      'kl',
      'kl_exact',
      'sqrt_kl',
      'entropy',
      'clip_frac',
      'value_loss',
      'policy_loss',
      'reward_used',
      'approx_kl',
  ):
    assert m[k].shape == (40,) and np.all(np.isfinite(m[k])), k
  assert m['mode'].shape == (40, 2, 4, 2)
  assert np.asarray(m['sqrt_kl'])[-1] > np.asarray(m['sqrt_kl'])[0]


def test_kl_penalty_keeps_policy_closer_to_reference(unpenalised_run):
  config, jh, params, _, m_free = unpenalised_run
  config = small_config(num_updates=40, kl_beta=1.0, ent_coef=0.0)
  _, m = ppo.train(config, jax.random.key(0), jh, params, params, toy_reward)
  kls = [float(np.asarray(x['kl_exact'])[-1]) for x in (m_free, m)]
  assert kls[1] < 0.5 * kls[0], kls


def test_same_seed_same_numbers_and_vmap_matches_separate_runs(unpenalised_run):
  config, jh, params, _, _ = unpenalised_run  # same config: compile reused
  keys = jax.random.split(jax.random.key(5), 2)
  runs = [ppo.train(config, k, jh, params, params, toy_reward) for k in keys]
  again = ppo.train(config, keys[0], jh, params, params, toy_reward)
  assert_trees_equal(runs[0], again)  # bitwise
  with pytest.raises(AssertionError):
    assert_trees_equal(runs[0][0], runs[1][0])
  batched = jax.jit(
      jax.vmap(ppo.train, in_axes=(None, 0, None, None, None, None)),
      static_argnums=(0, 5),
  )(ppo._freeze(config), keys, jh, params, params, toy_reward)
  ppo.check_finite(batched[1])
  # Batched convolutions round differently from unbatched ones (~1e-7),
  # amplified over 40 updates to ~2e-5; different seeds differ by ~1e-1.
  for i in range(2):
    jax.tree.map(
        lambda b, r: np.testing.assert_allclose(b[i], r, rtol=1e-3, atol=2e-4),
        batched,
        runs[i],
    )


def test_chunked_monitor_equals_one_long_scan_and_plot(
    unpenalised_run, tmp_path
):
  config, jh, params, final, metrics = unpenalised_run
  key = jax.random.key(0)
  calls = []

  def gold(target):
    def fn(actions):
      calls.append(actions.shape)
      assert isinstance(actions, np.ndarray)
      return -np.sum((actions.mean(-2) - target) ** 2, -1)

    return fn

  golds = [gold(np.array([0.6, 0.4])), gold(np.array([0.5, 0.5]))]
  final_c, metrics_c, series = ppo.train_with_monitor(
      config,
      key,
      jh,
      params,
      params,
      toy_reward,
      golds,
      every=20,
      num_eval_samples=5,
  )
  assert_trees_equal(final, final_c)  # bitwise: chunks == one long scan
  assert_trees_equal(jax.tree.map(np.asarray, metrics), metrics_c)
  np.testing.assert_array_equal(series['update'], [0, 20, 40])
  assert (5, 4, 2) in calls and (1, 4, 2) in calls
  for k in (
      'kl',
      'sqrt_kl',
      'proxy_reward',
      'proxy_reward_mode',
      'gold_score',
      'gold_score_mode',
  ):
    assert series[k].shape == (3,) and np.all(np.isfinite(series[k])), k
  assert series['sqrt_kl'][0] == 0.0 and np.all(series['kl'][1:] > 0)
  assert series['proxy_reward'][-1] > series['proxy_reward'][0]
  path = figures_agent.overoptimisation(series, str(tmp_path / 'overopt.png'))
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert os.path.getsize(path) > 5000
  with pytest.raises(ValueError, match='gold'):
    ppo.train_with_monitor(
        config, key, jh, params, params, toy_reward, golds[0], every=2
    )


def test_nan_reward_raises_naming_the_first_bad_update():
  # NaN once a sampled vertex passes x = 0.62; the narrow initial policy
  # (x ~ 0.5) gets there only after some updates towards TARGET.
  def reward(jh, actions):
    r = toy_reward(jh, actions)
    return jnp.where(jnp.max(actions[..., 0], -1) > 0.62, jnp.nan, r)

  config = small_config(num_updates=30, kl_beta=0.0)
  config.policy.init_log_std = -3.0
  _, jh, params = setup(config)
  with pytest.raises(FloatingPointError, match='non-finite reward') as err:
    ppo.train(config, jax.random.key(0), jh, params, params, reward)
  bad = int(re.search(r'PPO update (\d+)', str(err.value)).group(1))
  assert 0 < bad < 30
  # Same (cached) jitted run, unchecked: every update before `bad` is finite.
  _, m = ppo._jitted(ppo._whole_run, ppo._freeze(config), reward, None)(
      jax.random.key(0), jh, params, params
  )
  assert np.all(np.isfinite(np.asarray(m['reward'])[:bad]))
  assert not np.isfinite(np.asarray(m['reward'])[bad])
  metrics = {
      'nonfinite_reward': np.zeros((2, 5), bool),
      'nonfinite_loss': np.zeros((2, 5), bool),
  }
  metrics['nonfinite_loss'][1, 3] = True
  with pytest.raises(
      FloatingPointError, match='PPO update 13: non-finite ' 'PPO loss'
  ):
    ppo.check_finite(metrics, first_update=10)
