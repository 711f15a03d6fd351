"""Tests of the reward-model evaluation numbers against hand computations."""

import jax.numpy as jnp
import numpy as np
import pytest

from rlhf_tf.evaluation import metrics
from rlhf_tf.reward import losses

# log(1 + e^-1), log(1 + e), log 2 by hand.
SP_NEG1, SP_POS1, LOG2 = 0.31326168751822286, 1.3132616875182228, np.log(2)


def test_pair_metrics_by_hand():
  # d = [1, -1, 0, 1]; decisive margins m = [1, -1, 0]; one tie (d = 1).
  out = metrics.pair_metrics(
      [2.0, 0.0, 1.0, 0.5], [1.0, 1.0, 1.0, -0.5], [1.0, 1.0, 0.0, 0.5]
  )
  assert out['accuracy'] == pytest.approx(1 / 3)  # d = 0 counts as wrong
  assert out['nll'] == pytest.approx((SP_NEG1 + SP_POS1 + LOG2) / 3)
  assert out['tie_loglik'] == pytest.approx(-(SP_NEG1 + SP_POS1) / 2)
  tie_ce = (SP_NEG1 + SP_POS1) / 2
  assert out['log_loss'] == pytest.approx(
      (SP_NEG1 + SP_POS1 + LOG2 + tie_ce) / 4
  )
  assert out['margin'] == pytest.approx(0.0)
  assert (out['num_pairs'], out['num_decisive'], out['num_ties']) == (4, 3, 1)


def test_pair_metrics_agree_with_training_metrics():
  rng = np.random.default_rng(0)
  rl, rr = rng.normal(size=50) * 3, rng.normal(size=50) * 3
  t = rng.choice([0.0, 0.5, 1.0], size=50)
  ours = metrics.pair_metrics(rl, rr, t)
  ref = losses.metrics(
      jnp.asarray(rl, jnp.float32), jnp.asarray(rr, jnp.float32), jnp.asarray(t)
  )
  for a, b in (
      ('log_loss', 'ce'),
      ('nll', 'nll'),
      ('accuracy', 'accuracy'),
      ('tie_loglik', 'tie_loglik'),
      ('margin', 'margin'),
  ):
    assert ours[a] == pytest.approx(float(ref[b]), rel=1e-5, abs=1e-6), a


def test_pair_metrics_extremes_are_finite_and_empty_sets_nan():
  out = metrics.pair_metrics([1e4, -1e4], [0.0, 0.0], [1.0, 1.0])
  assert out['accuracy'] == 0.5
  assert out['nll'] == pytest.approx(1e4 / 2)  # -log sigma(-1e4) = 1e4
  assert np.isnan(out['tie_loglik'])
  ties = metrics.pair_metrics([0.0], [0.0], [0.5])
  assert np.isnan(ties['accuracy']) and np.isnan(ties['nll'])
  assert ties['tie_loglik'] == pytest.approx(-LOG2)


def test_ece_six_samples_by_hand():
  # conf = max(p, 1 - p) = .9 .85 .7 .65 .55 .95; predicted L L R L R L;
  # correct 1 0 1 1 0 1. Bins of width .2: [.4,.6): {.55 wrong};
  # [.6,.8): {.7, .65} both right; [.8,1]: {.9 right, .85 wrong, .95 right}.
  # ECE = (1 |0 - .55| + 2 |1 - .675| + 3 |2/3 - .9|) / 6 = 1.9 / 6.
  p = [0.9, 0.85, 0.3, 0.65, 0.45, 0.95]
  y = [1, 0, 0, 1, 1, 1]
  ece, bins = metrics.expected_calibration_error(p, y, num_bins=5)
  assert ece == pytest.approx(1.9 / 6)
  np.testing.assert_array_equal(bins['count'], [0, 0, 1, 2, 3])
  np.testing.assert_allclose(bins['confidence'][2:], [0.55, 0.675, 0.9])
  np.testing.assert_allclose(bins['accuracy'][2:], [0.0, 1.0, 2 / 3])
  assert np.all(np.isnan(bins['accuracy'][:2]))
  np.testing.assert_allclose(bins['edges'], np.linspace(0, 1, 6))


def test_ece_zero_when_calibrated_and_symmetric_in_sides():
  # confidence .75 with 3 of 4 right -> perfectly calibrated.
  ece, _ = metrics.expected_calibration_error(
      [0.75, 0.75, 0.25, 0.25], [1, 1, 0, 1]
  )
  assert ece == pytest.approx(0.0, abs=1e-12)
  # swapping left and right (p -> 1 - p, y -> 1 - y) changes nothing.
  p, y = np.array([0.9, 0.85, 0.3, 0.65]), np.array([1, 0, 0, 1])
  a, _ = metrics.expected_calibration_error(p, y)
  b, _ = metrics.expected_calibration_error(1 - p, 1 - y)
  assert a == pytest.approx(b) and a > 0
  with pytest.raises(ValueError):
    metrics.expected_calibration_error([1.2], [1])


def test_rank_correlations_known_case():
  # ranks differ by d = (0, 1, -1, 0): rho = 1 - 6 * 2 / (4 * 15) = 0.8;
  # one discordant pair of 6: tau = (5 - 1) / 6.
  out = metrics.rank_correlations([1, 2, 3, 4], [1, 3, 2, 4])
  assert out['spearman_rho'] == pytest.approx(0.8)
  assert out['kendall_tau'] == pytest.approx(2 / 3)
  assert out['n'] == 4
  mono = metrics.rank_correlations([0.1, 0.5, 2.0, 9.0], [-3, -2, 5, 6])
  assert mono['spearman_rho'] == pytest.approx(1.0)
  assert mono['kendall_tau'] == pytest.approx(1.0)
  rev = metrics.rank_correlations([1, 2, 3], [3, 2, 1])
  assert rev['spearman_rho'] == pytest.approx(-1.0)
  assert np.isnan(metrics.rank_correlations([1, 1], [1, 2])['spearman_rho'])


def test_histogram_entropy_uniform_one_bin_and_two_bins():
  uniform = np.repeat(np.arange(4.0), 10)  # one value per bin of 4
  assert metrics.histogram_entropy_bits(uniform, bins=4) == pytest.approx(2.0)
  assert metrics.histogram_entropy_bits(np.full(7, 3.0), bins=50) == 0.0
  two = np.array([0.0] * 30 + [1.0] * 10)
  assert metrics.histogram_entropy_bits(two, bins=10) == pytest.approx(
      -(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))
  )


def test_sharpness_by_hand_and_ordering():
  out = metrics.sharpness(np.arange(10.0), [7.5, 8.5], bins=10)
  assert out['share_above_expert_mean'] == pytest.approx(0.1)  # only 9 > 8
  assert out['expert_percentile'] == pytest.approx((0.8 + 0.9) / 2)
  assert out['std'] == pytest.approx(np.sqrt(8.25))
  assert out['expert_z'] == pytest.approx(3.5 / np.sqrt(8.25))
  assert out['histogram_entropy_bits'] == pytest.approx(np.log2(10))
  assert out['normalised_entropy'] == pytest.approx(1.0)
  # A model that puts most random actions at low reward is "sharper".
  rng = np.random.default_rng(0)
  sharp = metrics.sharpness(rng.exponential(size=5000), [4.0])
  broad = metrics.sharpness(rng.uniform(0, 5, size=5000), [4.0])
  assert sharp['histogram_entropy_bits'] < broad['histogram_entropy_bits']
  assert sharp['share_above_expert_mean'] < broad['share_above_expert_mean']
  assert sharp['skewness'] > 1.0 > abs(broad['skewness'])
