"""Supervised warm start of the agent by behaviour cloning (Ziegler et al.).

Phase one of the RLHF pipeline the paper follows (§2): before PPO, the
policy is fitted to expert actions (the paper's pre-defined high-quality
polygons, possibly with their augmented copies, §3). The BC policy is also
the *reference* policy of the PPO KL penalty.

Objective (maximum likelihood of the expert polygons under the squashed
Gaussian, see policy.py):

    L(theta) = -1/(S E) sum_{s, e} log p_theta(x_{s,e} | jh_s),
    x_{s,e} = clip(expert_{s,e}, eps, 1 - eps).flatten()   [D = 2n]
    u_{s,e} = logit(x_{s,e}),
    log p(x) = log N(u; mu(jh), sigma) - sum_d log sigmoid'(u_d).

The Jacobian term does not depend on theta, it only makes L the true NLL of
x. Vertex order: experts are given in canonical order (counter-clockwise,
see ``polygon.canonicalize``) and the policy's coordinates are trained to
match that order, so the BC mode sigmoid(mu) is (near) canonical already.
During PPO the policy may drift to any order; the environment canonicalises,
so that is harmless (policy.py).

log-std: with ``learn_std=False`` (default) only the mean is fitted and the
state-independent log-std keeps its initial value, so the reference policy
keeps a useful exploration width even when E = 1 (the MLE of sigma would
collapse to the expert spread, to the clip floor when E = 1). With
``learn_std=True`` it is fitted too (sensible with augmented experts).

Full-batch Adam steps (the data is tiny: S scenes x E experts), the step is
jitted and ``num_steps`` steps run in one lax.scan. The value head gets no
gradient here (PPO fits it).
"""

from __future__ import annotations

import functools
from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rlhf_tf.agent import policy as policy_lib


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_steps = 500  # full-batch Adam steps ("epochs": the batch is all data)
  c.lr = 3e-3
  c.clip_eps = 1e-3  # experts are clipped to (eps, 1 - eps) before logit
  c.learn_std = False
  return c


def bc_loss(params, net, jh, u_expert, learn_std: bool):
  """Mean negative log-likelihood of the experts.

  Args:
    params: policy parameters.
    net: PolicyValueNet.
    jh: [S, B, B].
    u_expert: [S, E, D] logits of the (clipped) expert coordinates.
    learn_std: bool (may be traced); if False the log-std gets no gradient.

  Returns:
    (loss [], metrics dict): nll and the mean squared error (in x = [0,1]
    units) between sigmoid(mu) and the experts.
  """
  mu, log_std, _ = net.apply(params, jh)  # [S, D], [S, D]
  # learn_std may be traced (one compile serves both settings).
  log_std = jnp.where(learn_std, log_std, jax.lax.stop_gradient(log_std))
  logp = policy_lib.squashed_log_prob(u_expert, mu[:, None], log_std[:, None])
  nll = -jnp.mean(logp)
  mse = jnp.mean((jax.nn.sigmoid(mu[:, None]) - jax.nn.sigmoid(u_expert)) ** 2)
  return nll, {'nll': nll, 'mode_mse': mse}


@functools.partial(jax.jit, static_argnames=('net', 'num_steps'))
def _fit(params, jh, u_expert, lr, learn_std, *, net, num_steps: int):
  tx = optax.adam(lr)
  grad_fn = jax.value_and_grad(bc_loss, has_aux=True)

  def step(carry, _):
    p, opt_state = carry
    (_, metrics), grads = grad_fn(p, net, jh, u_expert, learn_std)
    updates, opt_state = tx.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), metrics

  (params, _), metrics = jax.lax.scan(
      step, (params, tx.init(params)), None, length=num_steps
  )
  return params, metrics


def behaviour_clone(
    config: ml_collections.ConfigDict, net, params, jh, experts
) -> Tuple[dict, Dict[str, np.ndarray]]:
  """Fits the policy to expert polygons.

  Args:
    config: ``default_config()`` fields (num_steps, lr, clip_eps, learn_std).
    net: PolicyValueNet.
    params: initial policy parameters.
    jh: [S, B, B] joint histograms.
    experts: [S, E, n, 2] expert polygons in canonical order, in [0, 1]^2.

  Returns:
    (params, history) with history['nll'], history['mode_mse'] of shape
    [num_steps] (before each step).

  Raises:
    ValueError: shapes disagree. FloatingPointError: non-finite loss, naming
    the first bad step.
  """
  jh = jnp.asarray(jh, jnp.float32)
  experts = jnp.asarray(experts, jnp.float32)
  if jh.ndim != 3 or experts.ndim != 4 or experts.shape[0] != jh.shape[0]:
    raise ValueError(
        f'need jh [S, B, B] and experts [S, E, n, 2], got '
        f'{jh.shape} and {experts.shape}'
    )
  if experts.shape[-2:] != (net.n_vertices, 2):
    raise ValueError(
        f'experts have {experts.shape[-2]} vertices, the net '
        f'{net.n_vertices}'
    )
  u_expert = policy_lib.to_unconstrained(experts, config.clip_eps)
  params, metrics = _fit(
      params,
      jh,
      u_expert,
      jnp.float32(config.lr),
      jnp.bool_(config.learn_std),
      net=net,
      num_steps=int(config.num_steps),
  )
  history = jax.tree.map(np.asarray, metrics)
  bad = np.flatnonzero(~np.isfinite(history['nll']))
  if bad.size:
    raise FloatingPointError(
        f'behaviour cloning: non-finite NLL at step ' f'{int(bad[0])}'
    )
  return params, history
