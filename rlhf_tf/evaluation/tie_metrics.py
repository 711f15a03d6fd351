"""Tie-aware evaluation of a reward model on held-out pairs, numpy / scipy.

The paper counts decisive pairs only. Here ties are outcomes to predict
(beyond the paper; conventions of ``rlhf_tf.reward.losses``: d = r_left -
r_right, target t = P(left preferred), 1 / 0 decisive, 0.5 tie):

- three-way accuracy (left / right / tie): a pair is predicted a tie when
  |d| < tau, else the side with the higher reward. tau is tuned on a
  VALIDATION split of the held-out pairs and scored on the disjoint TEST
  split (:func:`split_validation_test`, :func:`tie_aware_metrics`); the
  tuner only ever receives validation pairs.
- PickScore's scoring (Kirstain et al. 2023): the same prediction, but a
  tie-vs-winner mismatch scores 1/2 (a wrong winner 0), with its own tau.
- "ties are closer" (RewardBench 2's Ties check): the share of tied pairs
  whose |d| is below the median |d| of untied pairs, and the probability
  that a tied pair's |d| is below an untied pair's (:func:`ties_closer`).
- held-out tie log-likelihood under Davidson's model (see
  ``losses.davidson_log_probs``; P(tie) = nu / (2 cosh(d/2) + nu)) for EVERY
  loss: a model trained with L_D brings its learned nu, for L_C and L_L nu
  is fitted by maximum likelihood on the validation split
  (:func:`fit_tie_nu`).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from rlhf_tf.evaluation.metrics import as_1d, mean_or_nan

OBJECTIVES = ('three_way', 'pickscore')


def davidson_log_probs(d, nu: float) -> Tuple[np.ndarray, ...]:
  """(log P(left), log P(right), log P(tie)) [P] under Davidson's model.

  Z = e^{d/2} + e^{-d/2} + nu, in log space (logaddexp); nu = 0 gives
  log P(tie) = -inf and Bradley-Terry for the other two.
  """
  d = np.asarray(d, np.float64)
  with np.errstate(divide='ignore'):
    log_nu = np.log(nu)
  log_z = np.logaddexp(np.logaddexp(0.5 * d, -0.5 * d), log_nu)
  return 0.5 * d - log_z, -0.5 * d - log_z, log_nu - log_z


def fit_tie_nu(delta, target) -> float:
  """Maximum-likelihood Davidson tie parameter nu for FIXED rewards.

  With c_i = 2 cosh(d_i / 2) the log-likelihood is sum_ties log nu -
  sum_all log(c_i + nu) (+ terms free of nu); its derivative vanishes where

    n_ties = sum_i nu / (c_i + nu) = sum_i sigmoid(log nu - log c_i),

  whose right side grows monotonically from 0 to N: one root, found in
  u = log nu by Brent's method. No ties gives nu = 0; only ties gives inf.
  """
  d, t = as_1d('delta', delta), as_1d('target', target)
  n_ties = int(np.sum(t == 0.5))
  if n_ties == 0:
    return 0.0
  if n_ties == t.size:
    return float('inf')
  log_c = np.logaddexp(0.5 * d, -0.5 * d)
  excess = lambda u: float(np.sum(scipy.special.expit(u - log_c))) - n_ties
  lo, hi = float(log_c.min()) - 60.0, float(log_c.max()) + 60.0
  return float(np.exp(scipy.optimize.brentq(excess, lo, hi, xtol=1e-12)))


def predict_three_way(delta, threshold: float) -> np.ndarray:
  """[P] predicted target: 0.5 (tie) where |d| < tau, else 1 (d > 0) / 0."""
  d = as_1d('delta', delta)
  return np.where(np.abs(d) < threshold, 0.5, np.where(d > 0, 1.0, 0.0))


def _pair_scores(
    predicted: np.ndarray, target: np.ndarray, objective: str
) -> np.ndarray:
  """Per-pair score: 1 exact; 1/2 for a tie-vs-winner mismatch under
  'pickscore' (0 under 'three_way'); 0 for the wrong winner."""
  if objective not in OBJECTIVES:
    raise ValueError(f'unknown objective {objective!r}; one of {OBJECTIVES}')
  exact = predicted == target
  half = (predicted == 0.5) != (target == 0.5)
  partial = 0.5 if objective == 'pickscore' else 0.0
  return np.where(exact, 1.0, np.where(half, partial, 0.0))


def tune_tie_threshold(
    delta, target, objective: str = 'three_way'
) -> Tuple[float, float]:
  """The tie threshold tau on |d| that maximises the mean pair score.

  Candidates: 0 (no tie predicted), the midpoints between consecutive
  distinct |d| values, and max |d| + 1 (every pair a tie); the smallest
  maximiser wins. O(P log P): sorted by |d|, predicting the first k pairs
  as ties scores cumsum(tie scores)[k] + the rest's winner scores.

  Args:
    delta, target: [P] of the pairs to tune on (the validation split only).
    objective: 'three_way' (plain three-way accuracy) or 'pickscore'.
  Returns:
    (tau, mean score at tau); (0.0, NaN) without pairs.
  """
  d, t = as_1d('delta', delta), as_1d('target', target)
  if d.size == 0:
    return 0.0, float('nan')
  order = np.argsort(np.abs(d), kind='stable')
  a, d, t = np.abs(d)[order], d[order], t[order]
  as_tie = _pair_scores(np.full_like(t, 0.5), t, objective)
  as_winner = _pair_scores(np.where(d > 0, 1.0, 0.0), t, objective)
  # total[k]: the first k sorted pairs predicted ties, k = 0 .. P.
  total = (
      np.concatenate([[0.0], np.cumsum(as_tie)])
      + np.concatenate([[0.0], np.cumsum(as_winner[::-1])])[::-1]
  )
  # A threshold can only split between DISTINCT |d| values.
  valid = np.concatenate([[True], a[1:] > a[:-1], [True]])
  k = int(np.argmax(np.where(valid, total, -np.inf)))
  if k == 0:
    tau = 0.0
  elif k == a.size:
    tau = float(a[-1]) + 1.0
  else:
    tau = 0.5 * float(a[k - 1] + a[k])
  return tau, float(total[k] / a.size)


def three_way_scores(
    delta, target, threshold: float, objective: str = 'three_way'
) -> float:
  """Mean pair score of the three-way prediction at ``threshold``."""
  t = as_1d('target', target)
  return mean_or_nan(
      _pair_scores(predict_three_way(delta, threshold), t, objective)
  )


def ties_closer(delta, target) -> Dict[str, float]:
  """Do tied pairs get closer rewards than untied ones?

  With a = |d|: share_below_median = mean over ties of [a < median(a over
  untied pairs)] (0.5 if |d| ignored ties, 1 if every tie is closer than the
  typical untied pair); auc = P(a_tie < a_untied) + P(a_tie = a_untied) / 2
  (Mann-Whitney U / (n_tie n_untied)); the two medians. NaN if a kind is
  missing.
  """
  d, t = as_1d('delta', delta), as_1d('target', target)
  a = np.abs(d)
  tied, untied = a[t == 0.5], a[t != 0.5]
  if tied.size == 0 or untied.size == 0:
    nan = float('nan')
    return {
        'share_below_median': nan,
        'auc': nan,
        'median_tied': nan,
        'median_untied': nan,
        'num_ties': float(tied.size),
        'num_untied': float(untied.size),
    }
  u = scipy.stats.mannwhitneyu(untied, tied).statistic
  med = float(np.median(untied))
  return {
      'share_below_median': float(np.mean(tied < med)),
      'auc': float(u / (tied.size * untied.size)),
      'median_tied': float(np.median(tied)),
      'median_untied': med,
      'num_ties': float(tied.size),
      'num_untied': float(untied.size),
  }


def split_validation_test(
    pair_ids, target, validation_fraction: float = 0.5, seed: int = 0
) -> Tuple[np.ndarray, np.ndarray]:
  """Disjoint (validation ids, test ids) of held-out pairs, tie-stratified.

  Ties and decisive pairs are split separately (each kind keeps its share in
  both halves); the order of ``pair_ids`` does not matter (ids are sorted
  before the seeded permutation).
  """
  ids = np.asarray(pair_ids)
  t = as_1d('target', target)
  if ids.shape != t.shape or np.unique(ids).size != ids.size:
    raise ValueError('pair_ids must be unique, one per target')
  if not 0.0 < validation_fraction < 1.0:
    raise ValueError(
        f'validation_fraction must be in (0, 1), got ' f'{validation_fraction}'
    )
  rng = np.random.default_rng(seed)
  val = []
  for group in (np.sort(ids[t != 0.5]), np.sort(ids[t == 0.5])):
    k = int(round(validation_fraction * group.size))
    val.append(rng.permutation(group)[:k])
  val = np.sort(np.concatenate(val))
  return val, np.sort(np.setdiff1d(ids, val))


def tie_aware_metrics(
    delta, target, pair_ids, validation_ids, tie_nu: Optional[float] = None
) -> Dict[str, float]:
  """Three-way accuracy, PickScore score and Davidson tie log-likelihood.

  Pairs whose id is in ``validation_ids`` tune the thresholds (and nu when
  ``tie_nu`` is None); all other pairs are the test split and are only
  scored. Plain decisive accuracy on the test split is reported beside.

  Args:
    delta: [P] r_left - r_right; target: [P]; pair_ids: [P] unique ids;
    validation_ids: ids of the validation pairs (a subset of pair_ids);
    tie_nu: the learned nu of a model trained with L_D, else None.
  Returns:
    dict of floats: tie_threshold, three_way_accuracy, pickscore_threshold,
    pickscore_accuracy, decisive_accuracy, predicted_tie_rate (at
    tie_threshold), tie_nu, tie_nu_fitted_on_validation (1.0 / 0.0),
    tie_loglik_davidson (mean log P(tie) over test ties), three_way_loglik
    (mean log P(observed outcome) over test pairs), num_validation,
    num_test, num_test_ties. Non-finite values are NaN or +-inf.
  """
  d, t = as_1d('delta', delta), as_1d('target', target)
  ids = np.asarray(pair_ids)
  if not d.shape == t.shape == ids.shape:
    raise ValueError(f'shapes differ: {d.shape}, {t.shape}, {ids.shape}')
  if np.unique(ids).size != ids.size:
    raise ValueError('pair_ids must be unique')
  val = np.isin(ids, np.asarray(validation_ids))
  test = ~val
  tau, _ = tune_tie_threshold(d[val], t[val], 'three_way')
  tau_ps, _ = tune_tie_threshold(d[val], t[val], 'pickscore')
  fitted = tie_nu is None
  nu = fit_tie_nu(d[val], t[val]) if fitted else float(tie_nu)
  dt, tt = d[test], t[test]
  log_left, log_right, log_tie = davidson_log_probs(dt, nu)
  observed = np.where(
      tt == 0.5, log_tie, np.where(tt > 0.5, log_left, log_right)
  )
  decisive = tt != 0.5
  chosen = np.where(tt > 0.5, dt, -dt)[decisive]
  return {
      'tie_threshold': tau,
      'three_way_accuracy': three_way_scores(dt, tt, tau, 'three_way'),
      'pickscore_threshold': tau_ps,
      'pickscore_accuracy': three_way_scores(dt, tt, tau_ps, 'pickscore'),
      'decisive_accuracy': mean_or_nan((chosen > 0).astype(np.float64)),
      'predicted_tie_rate': mean_or_nan(
          (predict_three_way(dt, tau) == 0.5).astype(np.float64)
      ),
      'tie_nu': nu,
      'tie_nu_fitted_on_validation': float(fitted),
      'tie_loglik_davidson': mean_or_nan(log_tie[tt == 0.5]),
      'three_way_loglik': mean_or_nan(observed),
      'num_validation': float(np.sum(val)),
      'num_test': float(np.sum(test)),
      'num_test_ties': float(np.sum(tt == 0.5)),
  }


def seed_spread(by_run: dict, loss: str) -> dict:
  """{number: {'by_seed': {seed: value}, 'min', 'max', 'mean'}} of a loss's
  runs (``by_run``: {'<loss>/seed_<k>': tie_aware_metrics + 'ties_closer'})
  for the headline tie-aware numbers (one run says little: runs of one
  loss differ by more than the losses do on some of these)."""
  runs = {
      k.split('/')[1]: v for k, v in by_run.items() if k.split('/')[0] == loss
  }
  out = {}
  for name in (
      'three_way_accuracy',
      'pickscore_accuracy',
      'decisive_accuracy',
      'tie_loglik_davidson',
      'three_way_loglik',
  ):
    values = {seed: v[name] for seed, v in runs.items()}
    out[name] = dict(
        by_seed=values,
        min=min(values.values()),
        max=max(values.values()),
        mean=float(np.mean(list(values.values()))),
    )
  closer = {
      seed: v['ties_closer']['share_below_median'] for seed, v in runs.items()
  }
  out['ties_below_untied_median'] = dict(
      by_seed=closer,
      min=min(closer.values()),
      max=max(closer.values()),
      mean=float(np.mean(list(closer.values()))),
  )
  return out
