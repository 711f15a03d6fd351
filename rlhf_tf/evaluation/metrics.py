"""Numbers that evaluate a trained reward model (paper §4), numpy / scipy.

Conventions follow ``rlhf_tf.reward.losses``: for a pair with rewards
(r_left, r_right), d = r_left - r_right and the Bradley-Terry model (eq. 3)
gives p = P(left preferred) = sigma(d). ``target`` t is the probability that
LEFT is preferred: 1 / 0 for decisive votes, 0.5 for ties. All logarithms of
sigma are computed stably as log sigma(d) = -log(1 + e^{-d}) =
-logaddexp(0, -d), so large |d| never takes log(0).

- :func:`pair_metrics`: accuracy, the two losses, tie log-likelihood, counts.
- :func:`expected_calibration_error`: ECE of the pairwise probabilities.
- :func:`rank_correlations`: Spearman rho / Kendall tau against a gold score
  (e.g. the simulated inspector's ``inspector.score``).
- :func:`sharpness`: how concentrated the rewards of random actions are below
  the experts' (Fig. 2: "L_C is sharper than L_L" as a number).
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import scipy.stats


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
  """log sigma(x) = -log(1 + e^{-x}), stable for any float x."""
  return -np.logaddexp(0.0, -x)


def as_1d(name: str, x) -> np.ndarray:
  """x as a 1-D float64 array; a ValueError naming it otherwise."""
  a = np.asarray(x, np.float64)
  if a.ndim != 1:
    raise ValueError(f'{name} must be 1-D, got shape {a.shape}')
  return a


def mean_or_nan(x: np.ndarray) -> float:
  """The mean of x, NaN when x is empty (no pairs of that kind)."""
  return float(np.mean(x)) if x.size else float('nan')


def pair_metrics(r_left, r_right, target) -> Dict[str, float]:
  """Metrics of rewards on a set of labelled pairs.

  With d = r_left - r_right, p = sigma(d), decisive pairs D = {t != 1/2} and
  ties T = {t = 1/2}; for a decisive pair the chosen-minus-rejected margin is
  m = d if t > 1/2 else -d.

  Args:
    r_left, r_right: [P] rewards of the two actions of each pair.
    target: [P] P(left preferred): 1, 0 or 0.5 (tie).

  Returns:
    dict of floats:
      accuracy     mean over D of [m > 0] (equal rewards count as wrong, as in
                   ``losses.metrics``); NaN without decisive pairs.
      log_loss     L_C of eq. 4 over ALL pairs,
                   -mean[t log p + (1 - t) log(1 - p)] (ties included).
      nll          L_L of eq. 5, -mean over D of log sigma(m); NaN if D empty.
      tie_loglik   mean over T of 0.5 log p + 0.5 log(1 - p) (<= -log 2,
                   equality at d = 0); NaN without ties.
      margin       mean over D of m; NaN if D empty.
      num_pairs, num_decisive, num_ties: counts (as floats).
  """
  rl, rr, t = (
      as_1d('r_left', r_left),
      as_1d('r_right', r_right),
      as_1d('target', target),
  )
  if not rl.shape == rr.shape == t.shape:
    raise ValueError(f'shapes differ: {rl.shape}, {rr.shape}, {t.shape}')
  d = rl - rr
  log_p, log_q = _log_sigmoid(d), _log_sigmoid(-d)
  dec, tie = t != 0.5, t == 0.5
  m = np.where(t > 0.5, d, -d)[dec]
  return {
      'accuracy': mean_or_nan((m > 0).astype(np.float64)),
      'log_loss': mean_or_nan(-(t * log_p + (1.0 - t) * log_q)),
      'nll': mean_or_nan(-_log_sigmoid(m)),
      'tie_loglik': mean_or_nan((0.5 * log_p + 0.5 * log_q)[tie]),
      'margin': mean_or_nan(m),
      'num_pairs': float(t.size),
      'num_decisive': float(np.sum(dec)),
      'num_ties': float(np.sum(tie)),
  }


def expected_calibration_error(
    p, y, num_bins: int = 10
) -> Tuple[float, Dict[str, np.ndarray]]:
  """ECE of pairwise preference probabilities (decisive pairs only).

  Standard binary-classifier form: the model predicts class "left" when
  p >= 1/2 (p = 1/2 exactly counts as "left"), with confidence
  c = max(p, 1 - p) in [1/2, 1]; it is correct when the predicted class is
  the label. The confidences are put into ``num_bins`` equal-width bins of
  [0, 1] (bin b = [b/M, (b+1)/M), the last one closed; with c >= 1/2 the
  lower half of the bins stays empty), and

    ECE = sum_b (n_b / N) |acc_b - conf_b|,

  with n_b the count, conf_b the mean confidence and acc_b the fraction
  correct in bin b, N = sum_b n_b. Perfectly calibrated: acc_b = conf_b.

  Args:
    p: [N] P(left preferred) = sigma(r_left - r_right) of decisive pairs.
    y: [N] 1 if left was preferred, else 0.
    num_bins: M >= 1.

  Returns:
    (ece, bins): ece a float (NaN for N = 0); bins a dict of arrays
    'edges' [M + 1], 'confidence' [M], 'accuracy' [M] (NaN where empty) and
    'count' [M] (int).
  """
  p, y = as_1d('p', p), as_1d('y', y)
  if p.shape != y.shape:
    raise ValueError(f'p {p.shape} and y {y.shape} differ in shape')
  if num_bins < 1:
    raise ValueError(f'num_bins must be >= 1, got {num_bins}')
  if np.any((p < 0) | (p > 1)) or not np.all(np.isin(y, (0.0, 1.0))):
    raise ValueError('need p in [0, 1] and y in {0, 1}')
  pred = (p >= 0.5).astype(np.float64)
  conf = np.maximum(p, 1.0 - p)
  correct = (pred == y).astype(np.float64)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  idx = np.clip(np.floor(conf * num_bins).astype(int), 0, num_bins - 1)
  count = np.bincount(idx, minlength=num_bins)
  sum_conf = np.bincount(idx, weights=conf, minlength=num_bins)
  sum_acc = np.bincount(idx, weights=correct, minlength=num_bins)
  with np.errstate(invalid='ignore', divide='ignore'):
    mean_conf = np.where(count > 0, sum_conf / count, np.nan)
    mean_acc = np.where(count > 0, sum_acc / count, np.nan)
  total = int(count.sum())
  if total == 0:
    ece = float('nan')
  else:
    gap = np.abs(np.nan_to_num(mean_acc) - np.nan_to_num(mean_conf))
    ece = float(np.sum(count / total * gap))
  return ece, {
      'edges': edges,
      'confidence': mean_conf,
      'accuracy': mean_acc,
      'count': count,
  }


def sigmoid(x) -> np.ndarray:
  """sigma(x) = 1 / (1 + exp(-x)), elementwise (the Bradley-Terry p of a
  reward difference, eq. 3)."""
  return 1.0 / (1.0 + np.exp(-np.asarray(x)))


def pair_metrics_and_calibration(
    r_left, r_right, target, num_bins: int = 10
) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
  """``pair_metrics`` plus 'ece' of p = sigma(r_left - r_right) on the
  decisive pairs; returns (numbers, the reliability bins)."""
  r_left, r_right = np.asarray(r_left), np.asarray(r_right)
  target = np.asarray(target)
  numbers = pair_metrics(r_left, r_right, target)
  decisive = target != 0.5
  p_left = sigmoid((r_left - r_right)[decisive])
  ece, bins = expected_calibration_error(
      p_left, (target[decisive] == 1.0).astype(float), num_bins=num_bins
  )
  numbers['ece'] = ece
  return numbers, bins


def rank_correlations(reward, gold) -> Dict[str, float]:
  """Rank agreement of predicted rewards with a gold score.

  Spearman rho (Pearson correlation of the ranks, average ranks for ties)
  and Kendall tau-b (concordant minus discordant pairs, tie-corrected), both
  from scipy.stats.

  Args:
    reward: [N] predicted rewards. gold: [N] gold scores (e.g. the simulated
      inspector's score of the same actions).

  Returns:
    {'spearman_rho', 'kendall_tau', 'n'}; the correlations are NaN for
    N < 2 or a constant input.
  """
  r, g = as_1d('reward', reward), as_1d('gold', gold)
  if r.shape != g.shape:
    raise ValueError(f'reward {r.shape} and gold {g.shape} differ in shape')
  n = int(r.size)
  if n < 2 or np.ptp(r) == 0 or np.ptp(g) == 0:
    return {'spearman_rho': float('nan'), 'kendall_tau': float('nan'), 'n': n}
  rho = scipy.stats.spearmanr(r, g).statistic
  tau = scipy.stats.kendalltau(r, g).statistic
  return {'spearman_rho': float(rho), 'kendall_tau': float(tau), 'n': n}


def histogram_entropy_bits(values, bins: int = 50) -> float:
  """Shannon entropy (bits) of the histogram of ``values`` over their range.

  q_b = n_b / N over ``bins`` equal-width bins of [min, max];
  H = -sum_b q_b log2 q_b, 0 <= H <= log2(bins): 0 when all values share a
  bin, log2(bins) when every bin holds the same count.
  """
  v = as_1d('values', values)
  if v.size == 0:
    return float('nan')
  counts, _ = np.histogram(v, bins=bins, range=(v.min(), v.max()))
  q = counts[counts > 0] / v.size
  return float(-np.sum(q * np.log2(q)))


def sharpness(
    rewards_random, expert_rewards, bins: int = 50
) -> Dict[str, float]:
  """How sharply a reward model separates random actions from the experts'.

  Fig. 2 of the paper: a good model gives most random actions a low reward
  and few a high one. Scale-free numbers (the two losses give rewards of
  different scales) with R the random rewards [N], e the expert rewards [E]:

    share_above_expert_mean  mean_i [R_i > mean(e)]  (small = sharp)
    expert_percentile        mean_j mean_i [R_i < e_j], the experts' mean
                             percentile among random actions (large = sharp)
    expert_z                 (mean(e) - mean(R)) / std(R)
    histogram_entropy_bits   H of the histogram of R over its range (see
                             :func:`histogram_entropy_bits`; small = peaked)
    normalised_entropy       H / log2(bins) in [0, 1]
    skewness                 sample skewness of R (> 0: long high tail, mass
                             at low rewards)
    mean, median, std        of R; expert_mean = mean(e).

  Args:
    rewards_random: [N] rewards of uniform random actions (N >= 1).
    expert_rewards: [E] rewards of expert actions on the same scene (E >= 1).
    bins: histogram bins.
  """
  r = as_1d('rewards_random', rewards_random)
  e = as_1d('expert_rewards', expert_rewards)
  if r.size == 0 or e.size == 0:
    raise ValueError('need at least one random and one expert reward')
  expert_mean = float(np.mean(e))
  std = float(np.std(r))
  entropy = histogram_entropy_bits(r, bins)
  return {
      'share_above_expert_mean': float(np.mean(r > expert_mean)),
      'expert_percentile': float(
          np.mean(np.searchsorted(np.sort(r), e, side='left')) / r.size
      ),
      'expert_z': (expert_mean - float(np.mean(r))) / std
      if std > 0
      else float('nan'),
      'histogram_entropy_bits': entropy,
      'normalised_entropy': entropy / np.log2(bins) if bins > 1 else 0.0,
      'skewness': float(scipy.stats.skew(r)) if std > 0 else float('nan'),
      'mean': float(np.mean(r)),
      'median': float(np.median(r)),
      'std': std,
      'expert_mean': expert_mean,
      'num_random': float(r.size),
      'num_experts': float(e.size),
  }
