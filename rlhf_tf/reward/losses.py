"""Bradley-Terry preference losses and metrics (paper eq. 3-5).

With d = r_left - r_right, eq. 3 gives p = p(left > right) = sigma(d), and
log p = log_sigmoid(d), log(1 - p) = log_sigmoid(-d): both are computed with
``jax.nn.log_sigmoid`` so no loss overflows or takes log(0) for large |d|.

``target`` t [P] is the probability that LEFT is preferred (mu_left = t,
mu_right = 1 - t in eq. 4): 1 / 0 for decisive votes, 0.5 for ties. A pair is
DECISIVE when t != 0.5; its chosen action is the left one when t > 0.5.

Every function takes an optional ``weight`` [P] (default all ones) so that the
zero-weight padding of a last partial batch drops out of every mean.
"""

from __future__ import annotations

from typing import Callable, Dict

import jax
import jax.numpy as jnp


def _weights(target, weight):
  return jnp.ones_like(target) if weight is None else weight


def _safe_mean(values, mask):
  """sum(mask * values) / sum(mask), and 0 (zero gradient) if sum(mask) = 0."""
  total = jnp.sum(mask)
  return jnp.sum(jnp.where(mask > 0, values, 0.0) * mask) / jnp.maximum(
      total, 1e-12) * (total > 0)


def decisive_mask(target, weight=None):
  """[P] float: weight of the decisive (non-tie) pairs, 0 for ties."""
  return _weights(target, weight) * (target != 0.5)


def tie_mask(target, weight=None):
  """[P] float: weight of the tie pairs."""
  return _weights(target, weight) * (target == 0.5)


def loss_ce(r_left, r_right, target, weight=None):
  """L_C, eq. 4: -mean[t log p + (1 - t) log(1 - p)] over ALL pairs.

  Ties (t = 1/2, mu uniform) pull the two rewards together; the minimum for a
  tie is log 2 at r_left = r_right.

  Args:
    r_left, r_right: [P] rewards; target: [P] P(left preferred);
    weight: optional [P] (0 = padding).
  Returns:
    scalar loss (0 if all weights are 0).
  """
  d = r_left - r_right
  ll = target * jax.nn.log_sigmoid(d) + (1 - target) * jax.nn.log_sigmoid(-d)
  return -_safe_mean(ll, _weights(target, weight))


def loss_nll(r_left, r_right, target, weight=None):
  """L_L, eq. 5: -mean log p(chosen > rejected) over DECISIVE pairs only.

  Ties are dropped through a mask (changing tie rewards does not change the
  loss). A batch without a decisive pair gives loss 0 with a zero gradient
  (not NaN): the masked sum is divided by max(count, tiny) and multiplied by
  (count > 0).
  """
  d = r_left - r_right
  chosen_d = jnp.where(target > 0.5, d, -d)
  return -_safe_mean(jax.nn.log_sigmoid(chosen_d),
                     decisive_mask(target, weight))


LOSSES: Dict[str, Callable] = {'ce': loss_ce, 'nll': loss_nll}


def get_loss(name: str) -> Callable:
  """The loss function named by config ('ce' = eq. 4, 'nll' = eq. 5)."""
  if name not in LOSSES:
    raise ValueError(f'unknown loss {name!r}; choose from {sorted(LOSSES)}')
  return LOSSES[name]


def metrics(r_left, r_right, target, weight=None) -> Dict[str, jnp.ndarray]:
  """Evaluation metrics of a set of pairs (all scalars).

  - ce, nll: the two losses (eq. 4, eq. 5).
  - accuracy: fraction of decisive pairs whose chosen action has the strictly
    higher reward (NaN if there is no decisive pair).
  - tie_loglik: mean over ties of 0.5 log p + 0.5 log(1 - p), the
    log-likelihood of a tie label under eq. 4 (max -log 2 at d = 0; NaN if
    there is no tie).
  - margin: mean over decisive pairs of r_chosen - r_rejected (NaN if none).
  - num_decisive, num_ties: the (weighted) counts.
  """
  d = r_left - r_right
  chosen_d = jnp.where(target > 0.5, d, -d)
  dec = decisive_mask(target, weight)
  tie = tie_mask(target, weight)
  n_dec, n_tie = jnp.sum(dec), jnp.sum(tie)
  nan = jnp.float32(jnp.nan)

  def mean_or_nan(v, m, n):
    return jnp.where(n > 0, jnp.sum(jnp.where(m > 0, v, 0.0) * m)
                     / jnp.maximum(n, 1e-12), nan)

  tie_ll = 0.5 * jax.nn.log_sigmoid(d) + 0.5 * jax.nn.log_sigmoid(-d)
  return {
      'ce': loss_ce(r_left, r_right, target, weight),
      'nll': loss_nll(r_left, r_right, target, weight),
      'accuracy': mean_or_nan((chosen_d > 0).astype(jnp.float32), dec, n_dec),
      'tie_loglik': mean_or_nan(tie_ll, tie, n_tie),
      'margin': mean_or_nan(chosen_d, dec, n_dec),
      'num_decisive': n_dec,
      'num_ties': n_tie,
  }
