"""Tests of the preference losses (paper eq. 3-5) and metrics."""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

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
  np.testing.assert_allclose(
      losses.loss_ce(R_LEFT, R_RIGHT, TARGET), ce, rtol=1e-5
  )
  np.testing.assert_allclose(
      losses.loss_nll(R_LEFT, R_RIGHT, TARGET), nll, rtol=1e-5
  )
  m = losses.metrics(R_LEFT, R_RIGHT, TARGET)
  np.testing.assert_allclose(m['accuracy'], np.mean(chosen_p[dec] > 0.5))
  tie = ~dec
  np.testing.assert_allclose(
      m['tie_loglik'],
      np.mean(0.5 * np.log(p[tie]) + 0.5 * np.log(1 - p[tie])),
      rtol=1e-5,
  )
  np.testing.assert_allclose(
      m['margin'], np.mean(np.where(TARGET > 0.5, d, -d)[dec]), rtol=1e-5
  )
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
  np.testing.assert_allclose(
      losses.loss_nll(moved_left, R_RIGHT, TARGET),
      losses.loss_nll(R_LEFT, R_RIGHT, TARGET),
      rtol=1e-7,
  )
  assert (
      abs(
          float(losses.loss_ce(moved_left, R_RIGHT, TARGET))
          - float(losses.loss_ce(R_LEFT, R_RIGHT, TARGET))
      )
      > 1e-3
  )
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
      check_grads(
          lambda a, b: fn(a, b, t), (rl, rr), order=2, modes=('rev',), eps=1e-6
      )
  assert jnp.asarray(1.0).dtype == jnp.float32  # x64 not left on


def test_loss_registry():
  assert losses.get_loss('ce') is losses.loss_ce
  assert losses.get_loss('nll') is losses.loss_nll
  assert losses.get_loss('davidson') is losses.loss_davidson
  assert losses.initial_loss_params('ce') == {}
  assert set(losses.initial_loss_params('davidson')) == {'tie_raw'}
  with pytest.raises(ValueError, match='unknown loss'):
    losses.get_loss('hinge')


def _np_softplus(x):
  return np.logaddexp(0.0, x)


@pytest.mark.parametrize('raw', [-3.0, 0.0, 0.5, 2.0])
def test_davidson_equal_rewards_give_documented_tie_probability(raw):
  nu = _np_softplus(raw)
  lp = losses.davidson_log_probs(jnp.zeros(3), jnp.float32(raw))
  np.testing.assert_allclose(np.exp(lp[2]), nu / (2 + nu), rtol=1e-5)
  np.testing.assert_allclose(np.exp(lp[0]), 1 / (2 + nu), rtol=1e-5)
  t = jnp.full((3,), 0.5)
  r = jnp.array([0.3, -1.0, 4.0])
  np.testing.assert_allclose(
      losses.loss_davidson(r, r, t, tie_raw=jnp.float32(raw)),
      -np.log(nu / (2 + nu)),
      rtol=1e-5,
  )
  m = losses.metrics(r, r, t, tie_raw=jnp.float32(raw))
  np.testing.assert_allclose(m['tie_prob_at_equal'], nu / (2 + nu), rtol=1e-5)
  np.testing.assert_allclose(
      m['davidson_tie_loglik'], np.log(nu / (2 + nu)), rtol=1e-5
  )


def test_davidson_hand_computation():
  raw = 0.4
  nu = _np_softplus(raw)
  d = (R_LEFT - R_RIGHT).astype(np.float64)
  z = np.exp(d / 2) + np.exp(-d / 2) + nu
  p_left, p_right, p_tie = np.exp(d / 2) / z, np.exp(-d / 2) / z, nu / z
  ll = np.where(
      TARGET == 0.5,
      np.log(p_tie),
      np.where(TARGET == 1.0, np.log(p_left), np.log(p_right)),
  )
  np.testing.assert_allclose(
      losses.loss_davidson(R_LEFT, R_RIGHT, TARGET, tie_raw=raw),
      -ll.mean(),
      rtol=1e-5,
  )
  m = losses.metrics(R_LEFT, R_RIGHT, TARGET, tie_raw=jnp.float32(raw))
  np.testing.assert_allclose(m['davidson'], -ll.mean(), rtol=1e-5)
  np.testing.assert_allclose(m['tie_nu'], nu, rtol=1e-6)
  np.testing.assert_allclose(
      m['davidson_tie_loglik'], np.log(p_tie[TARGET == 0.5]).mean(), rtol=1e-5
  )
  assert 'davidson' not in losses.metrics(R_LEFT, R_RIGHT, TARGET)


@settings(max_examples=40, deadline=None)
@given(st.floats(-30.0, 30.0), st.floats(-40.0, 10.0))
def test_davidson_probabilities_sum_to_one(d, raw):
  lp = losses.davidson_log_probs(jnp.float32(d), jnp.float32(raw))
  assert all(np.isfinite(float(x)) for x in lp)
  assert float(sum(jnp.exp(x) for x in lp)) == pytest.approx(1.0, abs=1e-5)
  # Symmetry: swapping left and right swaps their probabilities.
  lq = losses.davidson_log_probs(jnp.float32(-d), jnp.float32(raw))
  np.testing.assert_allclose(
      [lp[0], lp[2]], [lq[1], lq[2]], rtol=1e-5, atol=1e-6
  )


def test_davidson_reduces_to_bradley_terry_as_nu_goes_to_zero():
  dec = TARGET != 0.5
  nll = float(losses.loss_nll(R_LEFT[dec], R_RIGHT[dec], TARGET[dec]))
  gaps = []
  for raw in (-2.0, -6.0, -12.0, -30.0):
    lp = losses.davidson_log_probs(jnp.asarray(R_LEFT - R_RIGHT), raw)
    np.testing.assert_allclose(
        lp[0],
        _np_log_sigmoid(R_LEFT - R_RIGHT),
        atol=2 * _np_softplus(raw) + 1e-6,
    )
    gaps.append(
        abs(
            float(
                losses.loss_davidson(
                    R_LEFT[dec], R_RIGHT[dec], TARGET[dec], tie_raw=raw
                )
            )
            - nll
        )
    )
  assert gaps == sorted(gaps, reverse=True) and gaps[0] > 1e-2
  assert gaps[-1] < 1e-6


def test_davidson_tie_parameter_fits_tie_rate_at_equal_rewards():
  # All rewards equal, tie share q: dL/d nu = 0 at nu / (2 + nu) = q, i.e.
  # nu* = 2q / (1 - q) -- the maximum-likelihood tie parameter.
  target = jnp.array([0.5, 0.5, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])  # q = 1/4
  r = jnp.zeros(8)
  nu_star = 2 * 0.25 / 0.75
  raw_star = np.log(np.expm1(nu_star))
  grad = jax.grad(lambda raw: losses.loss_davidson(r, r, target, tie_raw=raw))
  assert abs(float(grad(jnp.float32(raw_star)))) < 1e-6
  assert (
      float(grad(jnp.float32(raw_star - 1)))
      < 0
      < float(grad(jnp.float32(raw_star + 1)))
  )


def test_davidson_weights_and_huge_margins():
  w = np.array([1, 1, 1, 0, 0, 0], np.float32)
  np.testing.assert_allclose(
      losses.loss_davidson(R_LEFT, R_RIGHT, TARGET, w, tie_raw=0.3),
      losses.loss_davidson(R_LEFT[:3], R_RIGHT[:3], TARGET[:3], tie_raw=0.3),
      rtol=1e-6,
  )
  rl, rr = jnp.array([1e4, -1e4, 1e4]), jnp.array([-1e4, 1e4, -1e4])
  t = jnp.array([0.0, 1.0, 0.5])
  v, g = jax.value_and_grad(losses.loss_davidson, argnums=(0, 1))(
      rl, rr, t, tie_raw=0.0
  )
  assert np.isfinite(float(v)) and float(v) == pytest.approx(
      (2e4 + 2e4 + 1e4 - np.log(np.log(2))) / 3, rel=1e-5
  )
  assert all(np.all(np.isfinite(x)) for x in g)


def test_log_softplus_matches_float64_and_has_finite_gradients():
  x = np.array([-200.0, -40.0, -15.5, -14.5, -1.0, 0.0, 3.0, 50.0])
  ref = np.log(np.log1p(np.exp(x.astype(np.float64))))
  np.testing.assert_allclose(
      losses.log_softplus(jnp.asarray(x, jnp.float32)), ref, rtol=1e-6
  )
  g = jax.vmap(jax.grad(losses.log_softplus))(jnp.asarray(x, jnp.float32))
  assert np.all(np.isfinite(g)) and np.all(np.asarray(g) > 0)


def test_davidson_check_grads_float64():
  with jax.enable_x64(True):
    rl = jnp.asarray(R_LEFT, jnp.float64)
    rr = jnp.asarray(R_RIGHT, jnp.float64)
    t = jnp.asarray(TARGET, jnp.float64)
    for raw in (0.3, -3.0, -20.0):  # -20: log_softplus's small branch
      check_grads(
          lambda a, b, c: losses.loss_davidson(a, b, t, tie_raw=c),
          (rl, rr, jnp.float64(raw)),
          order=2,
          modes=('rev',),
          eps=1e-6,
      )
