"""Bradley-Terry preference losses and metrics (paper eq. 3-5, and ties).

With d = r_left - r_right, eq. 3 gives p = p(left > right) = sigma(d), and
log p = log_sigmoid(d), log(1 - p) = log_sigmoid(-d): both are computed with
``jax.nn.log_sigmoid`` so no loss overflows or takes log(0) for large |d|.

``target`` t [P] is the probability that LEFT is preferred (mu_left = t,
mu_right = 1 - t in eq. 4): 1 / 0 for decisive votes, 0.5 for ties. A pair is
DECISIVE when t != 0.5; its chosen action is the left one when t > 0.5.

Every function takes an optional ``weight`` [P] (default all ones) so that the
zero-weight padding of a last partial batch drops out of every mean.

Three losses: L_C (eq. 4, 'ce') keeps ties as a uniform target, L_L (eq. 5,
'nll') drops them, and L_D ('davidson', beyond the paper) MODELS them with
Davidson's (1970) extension of Bradley-Terry, whose tie parameter nu >= 0 is
learned with the reward model (see :func:`davidson_log_probs`). A loss's
learned parameters are keyword arguments of the loss function;
:func:`initial_loss_params` gives their initial values ({} for L_C, L_L).
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
  return (
      jnp.sum(jnp.where(mask > 0, values, 0.0) * mask)
      / jnp.maximum(total, 1e-12)
      * (total > 0)
  )


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
  return -_safe_mean(
      jax.nn.log_sigmoid(chosen_d), decisive_mask(target, weight)
  )


def log_softplus(x):
  """log(softplus(x)) = log log(1 + e^x), finite for every float32 x.

  For x < -15, softplus(x) = e^x (1 - e^x / 2 + ...), so log softplus(x) =
  x - e^x / 2 to float32 precision; jnp.log(softplus(x)) would instead reach
  log(0) = -inf below x ~ -104. Both branches see safe inputs (jnp.where
  takes the gradient of both).
  """
  small = x < -15.0
  x_big = jnp.where(small, 0.0, x)
  x_small = jnp.where(small, x, -15.0)
  return jnp.where(
      small, x_small - 0.5 * jnp.exp(x_small), jnp.log(jax.nn.softplus(x_big))
  )


def tie_nu(tie_raw):
  """Davidson's tie parameter nu = softplus(tie_raw) >= 0 (learned raw)."""
  return jax.nn.softplus(tie_raw)


def davidson_log_probs(d, tie_raw):
  """Log-probabilities of the three outcomes under Davidson's model.

  With pi = e^r and d = r_left - r_right, Davidson (1970) gives
  P(tie) = nu sqrt(pi_l pi_r) / (pi_l + pi_r + nu sqrt(pi_l pi_r)); divided by
  sqrt(pi_l pi_r):

    P(left)  = e^{d/2} / Z,   P(right) = e^{-d/2} / Z,   P(tie) = nu / Z,
    Z = e^{d/2} + e^{-d/2} + nu = 2 cosh(d/2) + nu,      nu = softplus(raw).

  P(tie) is largest, nu / (2 + nu), at equal rewards and falls as |d| grows;
  nu -> 0 gives Bradley-Terry, P(left) = sigma(d) (eq. 3). log Z is a
  logsumexp of (d/2, -d/2, log nu), so nothing overflows for large |d|.

  Args:
    d: [...] reward differences r_left - r_right.
    tie_raw: scalar (or broadcastable) raw tie parameter.
  Returns:
    (log P(left), log P(right), log P(tie)), each [...].
  """
  log_nu = jnp.broadcast_to(log_softplus(tie_raw), jnp.shape(d))
  log_z = jax.nn.logsumexp(jnp.stack([0.5 * d, -0.5 * d, log_nu]), axis=0)
  return 0.5 * d - log_z, -0.5 * d - log_z, log_nu - log_z


def loss_davidson(r_left, r_right, target, weight=None, *, tie_raw):
  """L_D: -mean log P(observed outcome) under Davidson's model, ALL pairs.

    L_D = -mean_i [ [t_i = 1/2] log P(tie)
                    + [t_i != 1/2] (t_i log P(left) + (1 - t_i) log P(right)) ]

  with the probabilities of :func:`davidson_log_probs`. Unlike L_C, a tie is
  its own outcome: its likelihood nu / (2 cosh(d/2) + nu) rewards equal
  rewards AND a tie parameter that matches how often near-equal pairs tie.
  At d = 0 a tie costs -log(nu / (2 + nu)); with nu -> 0 the decisive terms
  are L_L's (eq. 5).

  Args:
    r_left, r_right: [P] rewards; target: [P] P(left preferred), 0.5 = tie;
    weight: optional [P] (0 = padding); tie_raw: scalar, nu = softplus(raw).
  Returns:
    scalar loss (0 if all weights are 0).
  """
  log_left, log_right, log_tie = davidson_log_probs(r_left - r_right, tie_raw)
  ll = jnp.where(
      target == 0.5, log_tie, target * log_left + (1 - target) * log_right
  )
  return -_safe_mean(ll, _weights(target, weight))


LOSSES: Dict[str, Callable] = {
    'ce': loss_ce,
    'nll': loss_nll,
    'davidson': loss_davidson,
}

# Initial learned loss parameters: softplus(0.0) = log 2, P(tie | d = 0)
# = 0.26, between the paper's tie rates (10-20 %) and 1/3.
_INITIAL_LOSS_PARAMS = {'ce': {}, 'nll': {}, 'davidson': {'tie_raw': 0.0}}


def get_loss(name: str) -> Callable:
  """The loss named by config: 'ce' = eq. 4, 'nll' = eq. 5, 'davidson'."""
  if name not in LOSSES:
    raise ValueError(f'unknown loss {name!r}; choose from {sorted(LOSSES)}')
  return LOSSES[name]


def initial_loss_params(name: str) -> Dict[str, jnp.ndarray]:
  """The learned parameters of loss ``name`` at initialisation (scalars)."""
  get_loss(name)
  return {k: jnp.float32(v) for k, v in _INITIAL_LOSS_PARAMS[name].items()}


def metrics(
    r_left, r_right, target, weight=None, tie_raw=None
) -> Dict[str, jnp.ndarray]:
  """Evaluation metrics of a set of pairs (all scalars).

  - ce, nll: the two losses (eq. 4, eq. 5).
  - accuracy: fraction of decisive pairs whose chosen action has the strictly
    higher reward (NaN if there is no decisive pair).
  - tie_loglik: mean over ties of 0.5 log p + 0.5 log(1 - p), the
    log-likelihood of a tie label under eq. 4 (max -log 2 at d = 0; NaN if
    there is no tie).
  - margin: mean over decisive pairs of r_chosen - r_rejected (NaN if none).
  - num_decisive, num_ties: the (weighted) counts.
  With ``tie_raw`` (a model trained with L_D), also:
  - davidson: L_D; davidson_tie_loglik: mean over ties of log P(tie) (NaN
    if no tie); tie_nu: nu; tie_prob_at_equal: nu / (2 + nu).
  """
  d = r_left - r_right
  chosen_d = jnp.where(target > 0.5, d, -d)
  dec = decisive_mask(target, weight)
  tie = tie_mask(target, weight)
  n_dec, n_tie = jnp.sum(dec), jnp.sum(tie)
  nan = jnp.float32(jnp.nan)

  def mean_or_nan(v, m, n):
    return jnp.where(
        n > 0,
        jnp.sum(jnp.where(m > 0, v, 0.0) * m) / jnp.maximum(n, 1e-12),
        nan,
    )

  tie_ll = 0.5 * jax.nn.log_sigmoid(d) + 0.5 * jax.nn.log_sigmoid(-d)
  out = {
      'ce': loss_ce(r_left, r_right, target, weight),
      'nll': loss_nll(r_left, r_right, target, weight),
      'accuracy': mean_or_nan((chosen_d > 0).astype(jnp.float32), dec, n_dec),
      'tie_loglik': mean_or_nan(tie_ll, tie, n_tie),
      'margin': mean_or_nan(chosen_d, dec, n_dec),
      'num_decisive': n_dec,
      'num_ties': n_tie,
  }
  if tie_raw is not None:
    nu = tie_nu(tie_raw)
    out['davidson'] = loss_davidson(
        r_left, r_right, target, weight, tie_raw=tie_raw
    )
    out['davidson_tie_loglik'] = mean_or_nan(
        davidson_log_probs(d, tie_raw)[2], tie, n_tie
    )
    out['tie_nu'] = nu
    out['tie_prob_at_equal'] = nu / (2.0 + nu)
  return out
