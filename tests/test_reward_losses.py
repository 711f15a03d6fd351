"""Tests of the preference losses (paper eq. 3-5) and metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rlhf_tf.reward import losses

R_LEFT = np.array([0.3, -1.2, 2.0, 0.1, 0.5, -0.7], np.float32)
R_RIGHT = np.array([-0.4, 0.8, 1.5, 0.1, -2.0, 0.2], np.float32)
TARGET = np.array([1.0, 0.0, 0.5, 1.0, 0.5, 0.0], np.float32)


def _np_log_sigmoid(x):
  return -np.log1p(np.exp(-x))


def test_equal_rewards_give_log2():
  r = jnp.full((5,), 0.7)
  t = jnp.array([1.0, 0.0, 0.5, 1.0, 0.5])
  np.testing.assert_allclose(losses.loss_ce(r, r, t), np.log(2), rtol=1e-6)
  np.testing.assert_allclose(losses.loss_nll(r, r, t), np.log(2), rtol=1e-6)


def test_hand_computation_with_ties():
  d = (R_LEFT - R_RIGHT).astype(np.float64)
  p = 1 / (1 + np.exp(-d))
  ce = -np.mean(TARGET * np.log(p) + (1 - TARGET) * np.log(1 - p))
  dec = TARGET != 0.5
  chosen_p = np.where(TARGET > 0.5, p, 1 - p)
  nll = -np.mean(np.log(chosen_p[dec]))
  np.testing.assert_allclose(losses.loss_ce(R_LEFT, R_RIGHT, TARGET), ce,
                             rtol=1e-5)
  np.testing.assert_allclose(losses.loss_nll(R_LEFT, R_RIGHT, TARGET), nll,
                             rtol=1e-5)
  m = losses.metrics(R_LEFT, R_RIGHT, TARGET)
  np.testing.assert_allclose(m['accuracy'], np.mean(chosen_p[dec] > 0.5))
  tie = ~dec
  np.testing.assert_allclose(
      m['tie_loglik'],
      np.mean(0.5 * np.log(p[tie]) + 0.5 * np.log(1 - p[tie])), rtol=1e-5)
  np.testing.assert_allclose(
      m['margin'], np.mean(np.where(TARGET > 0.5, d, -d)[dec]), rtol=1e-5)
  assert float(m['num_decisive']) == 4 and float(m['num_ties']) == 2


def test_weights_drop_padding():
  w = np.array([1, 1, 1, 0, 0, 0], np.float32)
  for fn in (losses.loss_ce, losses.loss_nll):
    full = fn(R_LEFT[:3], R_RIGHT[:3], TARGET[:3])
    padded = fn(R_LEFT, R_RIGHT, TARGET, w)
    np.testing.assert_allclose(padded, full, rtol=1e-6)


def test_nll_ignores_ties_ce_does_not():
  tie = TARGET == 0.5
  moved_left = np.where(tie, R_LEFT + 3.0, R_LEFT)
  np.testing.assert_allclose(losses.loss_nll(moved_left, R_RIGHT, TARGET),
                             losses.loss_nll(R_LEFT, R_RIGHT, TARGET),
                             rtol=1e-7)
  assert abs(float(losses.loss_ce(moved_left, R_RIGHT, TARGET))
             - float(losses.loss_ce(R_LEFT, R_RIGHT, TARGET))) > 1e-3
  # And the NLL gradient w.r.t. tie rewards is exactly zero.
  g = jax.grad(losses.loss_nll)(jnp.asarray(R_LEFT), R_RIGHT, TARGET)
  assert np.all(np.asarray(g)[tie] == 0) and np.all(np.asarray(g)[~tie] != 0)


def test_nll_without_decisive_pairs_is_zero_with_zero_grad():
  t = jnp.full((3,), 0.5)
  r = jnp.array([1.0, -2.0, 3.0])
  assert float(losses.loss_nll(r, -r, t)) == 0.0
  g = jax.grad(losses.loss_nll, argnums=(0, 1))(r, -r, t)
  assert all(np.all(np.isfinite(x)) and np.all(x == 0) for x in g)


def test_stable_for_huge_margins():
  rl = jnp.array([1e4, -1e4])
  rr = jnp.array([-1e4, 1e4])
  t = jnp.array([0.0, 1.0])  # confidently wrong
  for fn in (losses.loss_ce, losses.loss_nll):
    v = float(fn(rl, rr, t))
    assert np.isfinite(v) and v == pytest.approx(2e4, rel=1e-6)
    assert np.all(np.isfinite(jax.grad(fn)(rl, rr, t)))


def test_check_grads_float64():
  with jax.enable_x64(True):
    rl = jnp.asarray(R_LEFT, jnp.float64)
    rr = jnp.asarray(R_RIGHT, jnp.float64)
    t = jnp.asarray(TARGET, jnp.float64)
    assert rl.dtype == jnp.float64
    for fn in (losses.loss_ce, losses.loss_nll):
      check_grads(lambda a, b: fn(a, b, t), (rl, rr), order=2,
                  modes=('rev',), eps=1e-6)
  assert jnp.asarray(1.0).dtype == jnp.float32  # x64 not left on


def test_loss_registry():
  assert losses.get_loss('ce') is losses.loss_ce
  assert losses.get_loss('nll') is losses.loss_nll
  with pytest.raises(ValueError, match='unknown loss'):
    losses.get_loss('hinge')
