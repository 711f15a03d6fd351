"""Tests of the tie-aware evaluation (three-way accuracy, ties-closer, nu)."""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax.numpy as jnp
import numpy as np
import pytest

from rlhf_tf.evaluation import tie_metrics
from rlhf_tf.reward import losses


def _held_out(seed=0, n=120, tie_rate=0.2):
  """Rewards from a Davidson-like generator: ties where |d| is small."""
  rng = np.random.default_rng(seed)
  d = rng.normal(scale=2.0, size=n)
  t = np.where(d > 0, 1.0, 0.0)
  t[np.argsort(np.abs(d))[: int(tie_rate * n)]] = 0.5
  flip = rng.random(n) < 0.1  # some noise: wrong winners and odd ties
  t[flip] = rng.choice([0.0, 0.5, 1.0], size=int(flip.sum()))
  ids = rng.permutation(10_000)[:n]  # ids are not positions
  return d, t, ids


def test_predict_and_score_by_hand():
  d = np.array([2.0, -0.1, 0.3, -3.0, 0.05])
  t = np.array([1.0, 0.5, 0.0, 0.5, 0.5])
  pred = tie_metrics.predict_three_way(d, 0.5)
  np.testing.assert_array_equal(pred, [1.0, 0.5, 0.5, 0.0, 0.5])
  # exact: 1, 1, 0, 0, 1 -> 3/5; PickScore: 1, 1, .5 (tie vs winner), .5, 1.
  assert tie_metrics.three_way_scores(d, t, 0.5) == pytest.approx(0.6)
  assert tie_metrics.three_way_scores(d, t, 0.5, 'pickscore') == (
      pytest.approx(4 / 5)
  )
  # Wrong winner scores 0 in both.
  assert tie_metrics.three_way_scores([1.0], [0.0], 0.0, 'pickscore') == 0.0


def test_tune_threshold_by_hand_and_brute_force():
  # |d| sorted: .1 (tie) .2 (tie) .4 (left, d>0) .6 (tie) 1 (right, d<0).
  d = np.array([0.4, -1.0, 0.1, -0.2, 0.6])
  t = np.array([1.0, 0.0, 0.5, 0.5, 0.5])
  tau, score = tie_metrics.tune_tie_threshold(d, t)
  assert tau == pytest.approx(0.3) and score == pytest.approx(4 / 5)
  d, t, _ = _held_out(1, 60)
  for objective in tie_metrics.OBJECTIVES:
    tau, score = tie_metrics.tune_tie_threshold(d, t, objective)
    grid = np.concatenate([[0.0], np.abs(d) + 1e-9, np.abs(d) - 1e-9])
    best = max(tie_metrics.three_way_scores(d, t, g, objective) for g in grid)
    assert score == pytest.approx(best)
    assert tie_metrics.three_way_scores(d, t, tau, objective) == (
        pytest.approx(score)
    )
  assert tie_metrics.tune_tie_threshold(d, np.where(d > 0, 1.0, 0.0))[0] == 0


def test_validation_test_split_is_disjoint_stratified_and_order_free():
  d, t, ids = _held_out(2, 200)
  val, test = tie_metrics.split_validation_test(ids, t, 0.5, seed=3)
  assert np.intersect1d(val, test).size == 0
  np.testing.assert_array_equal(
      np.sort(np.concatenate([val, test])), np.sort(ids)
  )
  tie_ids = ids[t == 0.5]
  assert abs(np.isin(val, tie_ids).sum() - tie_ids.size / 2) <= 0.5
  perm = np.random.default_rng(0).permutation(ids.size)
  val2, _ = tie_metrics.split_validation_test(ids[perm], t[perm], 0.5, 3)
  np.testing.assert_array_equal(val, val2)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=100, max_size=100),
    st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=100, max_size=100),
)
def test_tuning_never_reads_the_test_split(test_delta, test_target):
  """Whatever the test pairs hold, thresholds and nu come from the
  validation ids alone (and equal tuning on exactly those pairs)."""
  d, t, ids = _held_out(4, 200)
  val, test = tie_metrics.split_validation_test(ids, t, 0.5, seed=0)
  assert np.intersect1d(val, test).size == 0
  is_test = np.isin(ids, test)
  d2, t2 = d.copy(), t.copy()
  d2[is_test], t2[is_test] = test_delta, test_target
  a = tie_metrics.tie_aware_metrics(d, t, ids, val)
  b = tie_metrics.tie_aware_metrics(d2, t2, ids, val)
  for k in ('tie_threshold', 'pickscore_threshold', 'tie_nu'):
    assert a[k] == b[k], k
  on_val = np.isin(ids, val)
  assert (
      a['tie_threshold']
      == tie_metrics.tune_tie_threshold(d[on_val], t[on_val])[0]
  )
  assert a['tie_nu'] == tie_metrics.fit_tie_nu(d[on_val], t[on_val])
  assert b['num_validation'] == val.size and b['num_test'] == test.size


def test_tie_aware_metrics_scores_the_test_split_only():
  d, t, ids = _held_out(5, 160)
  val, test = tie_metrics.split_validation_test(ids, t, 0.5, seed=1)
  out = tie_metrics.tie_aware_metrics(d, t, ids, val)
  on_test = np.isin(ids, test)
  dt, tt = d[on_test], t[on_test]
  assert out['three_way_accuracy'] == pytest.approx(
      tie_metrics.three_way_scores(dt, tt, out['tie_threshold'])
  )
  dec = tt != 0.5
  assert out['decisive_accuracy'] == pytest.approx(
      np.mean((np.where(tt > 0.5, dt, -dt) > 0)[dec])
  )
  assert out['num_test_ties'] == np.sum(tt == 0.5)
  # A learned nu is used as given, not fitted.
  given_nu = tie_metrics.tie_aware_metrics(d, t, ids, val, tie_nu=0.7)
  assert given_nu['tie_nu'] == 0.7
  assert given_nu['tie_nu_fitted_on_validation'] == 0.0
  _, _, log_tie = tie_metrics.davidson_log_probs(dt, 0.7)
  assert given_nu['tie_loglik_davidson'] == pytest.approx(
      np.mean(log_tie[tt == 0.5])
  )
  # The fitted nu is the ML one, so it beats the given nu on validation.
  assert out['tie_nu'] > 0


def test_fit_tie_nu_closed_form_and_maximum():
  # All d = 0: the ML nu solves nu / (2 + nu) = q -> nu = 2q / (1 - q).
  t = np.array([0.5] * 3 + [1.0] * 5 + [0.0] * 4)
  q = 3 / 12
  assert tie_metrics.fit_tie_nu(np.zeros(12), t) == pytest.approx(
      2 * q / (1 - q), rel=1e-9
  )
  d, t, _ = _held_out(6, 100)
  nu = tie_metrics.fit_tie_nu(d, t)

  def loglik(v):
    ll, lr, lt = tie_metrics.davidson_log_probs(d, v)
    return np.sum(np.where(t == 0.5, lt, np.where(t > 0.5, ll, lr)))

  assert loglik(nu) >= max(loglik(nu * 1.05), loglik(nu / 1.05))
  assert tie_metrics.fit_tie_nu(d, np.where(d > 0, 1.0, 0.0)) == 0.0


def test_davidson_log_probs_agree_with_the_training_loss():
  d = np.linspace(-30, 30, 13)
  raw = 0.37
  nu = float(np.logaddexp(0.0, raw))
  ours = tie_metrics.davidson_log_probs(d, nu)
  ref = losses.davidson_log_probs(jnp.asarray(d, jnp.float32), jnp.float32(raw))
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-5)


def test_ties_closer_by_hand():
  # untied |d| = 1, 2, 3, 4 (median 2.5); tied |d| = .5, 2, 3.
  d = np.array([1.0, -2.0, 3.0, -4.0, 0.5, -2.0, 3.0])
  t = np.array([1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5])
  out = tie_metrics.ties_closer(d, t)
  assert out['share_below_median'] == pytest.approx(2 / 3)
  # P(tie < untied): .5 -> 4/4; 2 -> 2/4 + .5/4; 3 -> 1/4 + .5/4.
  assert out['auc'] == pytest.approx((1 + 2.5 / 4 + 1.5 / 4) / 3)
  assert out['median_untied'] == 2.5 and out['median_tied'] == 2.0
  assert np.isnan(tie_metrics.ties_closer([1.0], [1.0])['auc'])
