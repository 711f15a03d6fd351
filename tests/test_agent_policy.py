"""Tests for rlhf_tf.agent.policy and rlhf_tf.agent.warm_start."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhf_tf.agent import policy, warm_start
from rlhf_tf.render import polygon, polygon_validation

BINS = 16


def small_net(**kw):
  args = dict(n_vertices=4, pool_to=16, features=(4, 8), hidden=32)
  args.update(kw)
  return policy.PolicyValueNet(**args)


def logit(x):
  return np.log(x) - np.log1p(-x)


# The policy as a distribution over actions, on (net, params, jh): what PPO
# computes inline on (mu, log_std), here to test the distribution math.


@functools.partial(jax.jit, static_argnames=('net', 'num'))
def sample(net: policy.PolicyValueNet, params, jh, key, num: int | None = None):
  """Draws actions for one JH.

  Args:
    net, params: the policy.
    jh: [B, B].
    key: PRNG key.
    num: None for one action, else the number of actions (one encoder pass).

  Returns:
    action [(num,) n, 2] canonical polygon (for the environment),
    u [(num,) D] the raw Gaussian sample (in the order drawn),
    logp [(num,)] log-density of x = sigmoid(u) (squashed, ordered vector).
  """
  mu, log_std, _ = net.apply(params, jh)
  shape = (() if num is None else (num,)) + mu.shape
  u = mu + jnp.exp(log_std) * jax.random.normal(key, shape, mu.dtype)
  return (
      policy.to_polygon(u, net.n_vertices),
      u,
      policy.squashed_log_prob(u, mu, log_std),
  )


@functools.partial(jax.jit, static_argnames=('net',))
def log_prob(net: policy.PolicyValueNet, params, jh, u):
  """log p(sigmoid(u) | jh): jh [B, B], u [..., D] -> [...]."""
  mu, log_std, _ = net.apply(params, jh)
  return policy.squashed_log_prob(u, mu, log_std)


@functools.partial(jax.jit, static_argnames=('net', 'num_samples'))
def entropy(
    net: policy.PolicyValueNet, params, jh, key, num_samples: int = 256
):
  """Monte-Carlo estimate of H[x] (squashed): jh [..., B, B] -> [...]."""
  mu, log_std, _ = net.apply(params, jh)
  eps = jax.random.normal(
      key, mu.shape[:-1] + (num_samples, mu.shape[-1]), mu.dtype
  )
  return policy.squashed_entropy(mu, log_std, eps)


@functools.partial(jax.jit, static_argnames=('net',))
def kl(net: policy.PolicyValueNet, params_a, params_b, jh):
  """Exact KL(pi_a(.|jh) || pi_b(.|jh)): jh [..., B, B] -> [...] (nats)."""
  mu_a, ls_a, _ = net.apply(params_a, jh)
  mu_b, ls_b, _ = net.apply(params_b, jh)
  return policy.gaussian_kl(mu_a, ls_a, mu_b, ls_b)


def numpy_squashed_log_prob(u, mu, log_std) -> np.ndarray:
  """float64 reference of ``policy.squashed_log_prob`` written out by hand."""
  u, mu, log_std = (np.asarray(t, np.float64) for t in (u, mu, log_std))
  sigma = np.exp(log_std)
  log_n = (
      -0.5 * ((u - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
  )
  s = 1.0 / (1.0 + np.exp(-u))
  one_minus_s = 1.0 / (1.0 + np.exp(u))  # not 1 - s: that rounds to 0
  return np.sum(log_n - np.log(s * one_minus_s), axis=-1)


@pytest.mark.parametrize('mu,log_std', [(0.0, 0.0), (1.3, -0.7), (-2.0, 0.5)])
def test_squashed_density_integrates_to_one_1d(mu, log_std):
  x = (np.arange(200_000) + 0.5) / 200_000  # midpoint rule on (0, 1)
  u = jnp.asarray(logit(x), jnp.float32)[:, None]
  logp = policy.squashed_log_prob(u, jnp.array([mu]), jnp.array([log_std]))
  np.testing.assert_allclose(
      np.sum(np.exp(np.asarray(logp, np.float64))) / x.size, 1.0, atol=2e-3
  )


def test_squashed_density_integrates_to_one_2d():
  m = 600
  g = (np.arange(m) + 0.5) / m
  xx, yy = np.meshgrid(g, g, indexing='ij')
  u = jnp.asarray(np.stack([logit(xx), logit(yy)], -1), jnp.float32)
  logp = policy.squashed_log_prob(
      u, jnp.array([0.4, -0.8]), jnp.array([-0.3, 0.2])
  )
  total = np.sum(np.exp(np.asarray(logp, np.float64))) / m**2
  np.testing.assert_allclose(total, 1.0, atol=3e-3)


def test_log_prob_matches_float64_hand_formula_even_for_large_u():
  rng = np.random.default_rng(0)
  u = rng.normal(size=(5, 8)) * 3.0
  u[0, :] = [40.0, -40.0, 25.0, -25.0, 0.0, 1.0, -1.0, 15.0]  # saturated
  mu, log_std = rng.normal(size=8), rng.normal(size=8) * 0.3
  got = np.asarray(
      policy.squashed_log_prob(
          jnp.asarray(u, jnp.float32),
          jnp.asarray(mu, jnp.float32),
          jnp.asarray(log_std, jnp.float32),
      )
  )
  assert np.all(np.isfinite(got))
  # float64 hand formula: log N(u) - sum log(s (1 - s)), with s(1-s) formed
  # directly (exact in float64 up to |u| ~ 700).
  want = numpy_squashed_log_prob(u, mu, log_std)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_sample_log_prob_mode_and_shapes():
  net = small_net()
  params = policy.init_params(net, jax.random.key(0), BINS)
  jh = jax.random.uniform(jax.random.key(1), (BINS, BINS))
  action, u, logp = sample(net, params, jh, jax.random.key(2), num=32)
  assert action.shape == (32, 4, 2) and u.shape == (32, 8)
  assert logp.shape == (32,)
  # Within 2 ulps of 1.0: the jitted sample and this eager sigmoid are two
  # XLA programs, free to round differently (they do at LLVM -O0, the
  # tests' level: tests/conftest.py).
  np.testing.assert_allclose(
      action,
      polygon.canonicalize(jax.nn.sigmoid(u).reshape(32, 4, 2)),
      rtol=0,
      atol=2.5e-7,
  )
  assert np.all((np.asarray(action) > 0) & (np.asarray(action) < 1))
  for a in np.asarray(action):  # canonical order: counter-clockwise, simple
    assert (
        polygon_validation.is_simple(a) and float(polygon.polygon_area(a)) > 0
    )
  np.testing.assert_allclose(logp, log_prob(net, params, jh, u), rtol=1e-6)
  mu, log_std, value = jax.jit(net.apply)(params, jh)
  np.testing.assert_allclose(
      logp, numpy_squashed_log_prob(u, mu, log_std), rtol=1e-5
  )
  np.testing.assert_array_equal(
      policy.mode(net, params, jh),
      polygon.canonicalize(jax.nn.sigmoid(mu).reshape(4, 2)),
  )
  assert value.shape == ()
  one = sample(net, params, jh, jax.random.key(2))
  assert one[0].shape == (4, 2) and one[1].shape == (8,) and one[2].shape == ()
  # Batched scenes and a 256-bin JH (average-pooled to pool_to first).
  mu_b, ls_b, v_b = jax.jit(net.apply)(params, jnp.stack([jh, jh, jh]))
  assert mu_b.shape == (3, 8) and ls_b.shape == (3, 8) and v_b.shape == (3,)
  np.testing.assert_allclose(mu_b[1], mu, rtol=1e-5, atol=1e-6)
  big = small_net(pool_to=32)  # 256 -> 32 bins by an 8x8 average pool
  p_big = jax.eval_shape(
      lambda k: big.init(k, jnp.zeros((256, 256))), jax.random.key(0)
  )
  assert p_big['params']['actor_0']['kernel'].shape == (8 * 8 * 8, 32)
  out = jax.eval_shape(
      lambda p: policy.mode(big, p, jnp.zeros((2, 256, 256))), p_big
  )
  assert out.shape == (2, 4, 2)


def test_kl_exact_matches_monte_carlo_of_squashed_densities():
  net = small_net()
  pa = policy.init_params(net, jax.random.key(0), BINS)
  pb = policy.init_params(net, jax.random.key(7), BINS)
  pb = jax.tree.map(lambda x: x, pb)
  pb['params']['log_std'] = pb['params']['log_std'] + jnp.linspace(-0.3, 0.3, 8)
  jh = jax.random.uniform(jax.random.key(1), (BINS, BINS))
  _, u, logp_a = sample(net, pa, jh, jax.random.key(3), num=200_000)
  logp_b = log_prob(net, pb, jh, u)  # squashed: Jacobians cancel
  mc = float(jnp.mean(logp_a - logp_b))
  exact = float(kl(net, pa, pb, jh))
  assert exact > 0.05
  np.testing.assert_allclose(mc, exact, rtol=0.03)
  np.testing.assert_allclose(kl(net, pa, pa, jh), 0.0, atol=1e-6)


def test_entropy_estimate_matches_numerical_integral_1d():
  mu, log_std = jnp.array([0.7]), jnp.array([0.4])
  x = (np.arange(100_000) + 0.5) / 100_000
  logp = np.asarray(
      policy.squashed_log_prob(
          jnp.asarray(logit(x), jnp.float32)[:, None], mu, log_std
      ),
      np.float64,
  )
  h_grid = -np.sum(np.exp(logp) * logp) / x.size
  eps = jax.random.normal(jax.random.key(0), (200_000, 1))
  h_mc = float(policy.squashed_entropy(mu, log_std, eps))
  np.testing.assert_allclose(h_mc, h_grid, atol=5e-3)
  assert h_grid < 0  # below the uniform density's entropy (0)


def test_policy_entropy_is_consistent_with_sample_log_probs():
  net = small_net()
  params = policy.init_params(net, jax.random.key(0), BINS)
  jh = jax.random.uniform(jax.random.key(1), (BINS, BINS))
  h = float(entropy(net, params, jh, jax.random.key(4), 100_000))
  _, _, logp = sample(net, params, jh, jax.random.key(5), num=100_000)
  np.testing.assert_allclose(h, -float(jnp.mean(logp)), atol=0.05)


def _bc_data():
  base = np.array(
      [
          [[0.2, 0.2], [0.6, 0.15], [0.7, 0.6], [0.3, 0.7]],
          [[0.5, 0.3], [0.85, 0.4], [0.8, 0.8], [0.45, 0.75]],
      ]
  )
  rng = np.random.default_rng(0)
  experts = base[:, None] + rng.normal(scale=0.01, size=(2, 4, 4, 2))
  experts = np.asarray(polygon.canonicalize(jnp.asarray(experts, jnp.float32)))
  jh = np.stack([np.eye(BINS), np.fliplr(np.eye(BINS))]).astype(np.float32)
  return jnp.asarray(jh), jnp.asarray(experts)


def _mode_error(net, params, jh, experts) -> np.ndarray:
  """Per-scene mean vertex distance between the canonical mode and the mean
  canonical expert polygon: [S] (JH units)."""
  pred = policy.mode(net, params, jnp.asarray(jh, jnp.float32))
  target = jnp.mean(
      polygon.canonicalize(jnp.asarray(experts, jnp.float32)), axis=1
  )
  return np.asarray(jnp.mean(jnp.linalg.norm(pred - target, axis=-1), axis=-1))


def test_behaviour_cloning_moves_mode_to_expert():
  net = small_net()
  params0 = policy.init_params(net, jax.random.key(0), BINS)
  jh, experts = _bc_data()
  config = warm_start.default_config()
  config.num_steps = 300
  config.lr = 1e-2
  err0 = _mode_error(net, params0, jh, experts)
  params, hist = warm_start.behaviour_clone(config, net, params0, jh, experts)
  err1 = _mode_error(net, params, jh, experts)
  assert hist['nll'].shape == (300,)
  assert hist['nll'][-1] < hist['nll'][0] - 1.0
  assert np.all(err1 < err0 / 5.0), (err0, err1)
  # learn_std=False: log-std untouched; critic head untouched (no gradient;
  # the conv encoder is shared, so V(jh) itself may move).
  np.testing.assert_array_equal(
      params['params']['log_std'], params0['params']['log_std']
  )
  for name in ('critic_0', 'critic_1', 'value'):
    jax.tree.map(
        np.testing.assert_array_equal,
        params['params'][name],
        params0['params'][name],
    )


def test_behaviour_cloning_learn_std_shrinks_std():
  net = small_net()
  params0 = policy.init_params(net, jax.random.key(0), BINS)
  jh, experts = _bc_data()
  config = warm_start.default_config()
  config.num_steps = 300  # as above: the compiled fit is reused
  config.lr = 1e-2
  config.learn_std = True
  params, _ = warm_start.behaviour_clone(config, net, params0, jh, experts)
  assert float(jnp.mean(params['params']['log_std'])) < -0.5 - 0.5


def test_behaviour_cloning_rejects_bad_shapes():
  net = small_net()
  params0 = policy.init_params(net, jax.random.key(0), BINS)
  jh, experts = _bc_data()
  with pytest.raises(ValueError, match='vertices'):
    warm_start.behaviour_clone(
        warm_start.default_config(), net, params0, jh, experts[:, :, :3]
    )
  with pytest.raises(ValueError, match='jh'):
    warm_start.behaviour_clone(
        warm_start.default_config(), net, params0, jh[0], experts
    )
