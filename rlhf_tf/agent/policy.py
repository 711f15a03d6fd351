"""Policy / value network of the one-shot TF agent (paper §2, eqs. 1-2).

State s = I_JH (eq. 1), a [B, B] joint histogram in [0, 1] (row = gradient
bin, col = intensity bin). Action a = polygon [n, 2] of (x, y) vertices in
[0, 1]^2 (eq. 2). One step per episode: a contextual bandit.

Distribution. The network outputs a diagonal Gaussian over D = 2n
unconstrained coordinates

    u ~ N(mu(s), diag(sigma^2)),       sigma = exp(log_std),
    x = sigmoid(u) in (0, 1)^D,        vertices = x.reshape(n, 2),
    a = canonicalize(vertices)         (counter-clockwise, always simple).

Change of variables for the squash x = sigmoid(u) (a bijection R^D ->
(0,1)^D with diagonal Jacobian sigmoid'(u) = sigmoid(u) sigmoid(-u)):

    log p(x) = log N(u; mu, sigma) - sum_d log sigmoid'(u_d)
             = log N(u; mu, sigma)
               - sum_d [log_sigmoid(u_d) + log_sigmoid(-u_d)]

(the log_sigmoid form is finite for any |u|, unlike log(s (1 - s))).

Why the log-prob of the *ordered* vector x is the right one. The
environment is R(x) = r(canonicalize(x.reshape(n, 2))): a deterministic
function of the sampled ordered vector x, so "policy over ordered vectors
+ an environment that canonicalises" is an exact MDP and the policy
gradient E[R(x) grad log p(x)] (and PPO's ratio p_new(x) / p_old(x)) is
valid with the density of x; no sum over the n! vertex orders is needed.
The reward model and renderer are (nearly) permutation invariant through
canonicalize, so nothing is lost by letting the policy keep any order. The
KL between two ordered-vector policies upper-bounds the KL between their
canonical-polygon push-forwards (data-processing inequality), so a KL
penalty measured on x is conservative.

KL in u-space. sigmoid is a bijection, and KL divergence is invariant under
a bijective change of variables (the Jacobian factors cancel in the density
ratio), so KL(p_a(x) || p_b(x)) = KL(N_a(u) || N_b(u)), exact in closed form.

Entropy. H[x] = H[u] + E_u[sum_d log sigmoid'(u_d)] (entropy of a
transformed variable). H[u] is closed form; the second term is estimated
with reparameterised samples u = mu + sigma * eps, so its gradient w.r.t. the
parameters is unbiased. H[x] <= 0, with equality for the uniform density on
the unit cube.

Functions take the (stateless) module first, like ``rlhf_tf.reward.model``:
``mode(net, params, jh)``; PPO (``agent.ppo``) samples and scores actions on
(mu, log_std) with the distribution math below.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from rlhf_tf.render import polygon

_LOG_2PI = math.log(2.0 * math.pi)


def default_config() -> ml_collections.ConfigDict:
  """Network hyper-parameters (CPU-cheap for a 256 x 256 JH)."""
  c = ml_collections.ConfigDict()
  c.n_vertices = 4  # paper §2: four corner points
  c.pool_to = 64  # average-pool the JH down to <= pool_to bins first
  c.features = (16, 32, 32)  # one stride-2 3x3 conv per entry
  c.hidden = 128
  c.init_log_std = -0.5  # state-independent log sigma in u (logit) space
  c.log_std_min = -5.0
  c.log_std_max = 2.0
  return c


class PolicyValueNet(nn.Module):
  """JH -> (Gaussian mean [D], log-std [D], value []) with D = 2n.

  Encoder: average pool by an integer factor to <= pool_to bins, stride-2
  3x3 convs (relu), flatten (keeps *where* in the JH a structure is, which a
  polygon in JH coordinates needs), then separate tanh MLP heads for actor
  and critic (PureJaxRL). The encoder is trained by the actor only (BC and
  the policy loss); the critic sees it through stop_gradient. Orthogonal
  init; the mean head is scaled by 0.01 so the initial mean is ~0
  (x ~ 0.5). log-std is a learned,
  state-independent vector clipped to [log_std_min, log_std_max].
  """

  n_vertices: int = 4
  pool_to: int = 64
  features: Sequence[int] = (16, 32, 32)
  hidden: int = 128
  init_log_std: float = -0.5
  log_std_min: float = -5.0
  log_std_max: float = 2.0

  @property
  def action_dim(self) -> int:
    return 2 * self.n_vertices

  @nn.compact
  def __call__(self, jh: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """jh [..., B, B] -> mu [..., D], log_std [..., D], value [...]."""
    lead = jh.shape[:-2]
    bins = jh.shape[-1]
    x = jnp.asarray(jh, jnp.float32).reshape((-1,) + jh.shape[-2:] + (1,))
    factor = max(1, bins // self.pool_to)
    if factor > 1:
      x = nn.avg_pool(x, (factor, factor), strides=(factor, factor))
    orth = nn.initializers.orthogonal
    for f in self.features:
      x = nn.relu(
          nn.Conv(
              f,
              (3, 3),
              strides=(2, 2),
              padding='SAME',
              kernel_init=orth(math.sqrt(2.0)),
          )(x)
      )
    z = x.reshape((x.shape[0], -1))
    dense = lambda f, scale, name: nn.Dense(
        f, kernel_init=orth(scale), name=name
    )
    a = nn.tanh(dense(self.hidden, math.sqrt(2.0), 'actor_0')(z))
    a = nn.tanh(dense(self.hidden, math.sqrt(2.0), 'actor_1')(a))
    mu = dense(self.action_dim, 0.01, 'mu')(a)
    # The critic reads the actor's features but does not train them: an
    # untrained value head (after BC) must not move the warm-started policy.
    v = nn.tanh(
        dense(self.hidden, math.sqrt(2.0), 'critic_0')(jax.lax.stop_gradient(z))
    )
    v = nn.tanh(dense(self.hidden, math.sqrt(2.0), 'critic_1')(v))
    value = dense(1, 1.0, 'value')(v)[:, 0]
    log_std = self.param(
        'log_std',
        nn.initializers.constant(self.init_log_std),
        (self.action_dim,),
    )
    log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
    mu = mu.reshape(lead + (self.action_dim,))
    return mu, jnp.broadcast_to(log_std, mu.shape), value.reshape(lead)


def net_from_config(config: ml_collections.ConfigDict) -> PolicyValueNet:
  """Builds the module from ``default_config()``-style fields."""
  return PolicyValueNet(
      n_vertices=config.n_vertices,
      pool_to=config.pool_to,
      features=tuple(config.features),
      hidden=config.hidden,
      init_log_std=config.init_log_std,
      log_std_min=config.log_std_min,
      log_std_max=config.log_std_max,
  )


@functools.partial(jax.jit, static_argnames=('net', 'bins'))
def init_params(net: PolicyValueNet, key: jax.Array, bins: int):
  """Parameters for a [bins, bins] JH (jitted: one compile, not one per op)."""
  return net.init(key, jnp.zeros((bins, bins), jnp.float32))


# ---------------------------------------------------------------------------
# Distribution math on (mu, log_std): pure, batch-agnostic (last axis = D).


def gaussian_log_prob(u, mu, log_std):
  """log N(u; mu, diag(exp(log_std)^2)), summed over the last axis -> [...]."""
  z = (u - mu) * jnp.exp(-log_std)
  return jnp.sum(-0.5 * z * z - log_std - 0.5 * _LOG_2PI, axis=-1)


def squash_log_det(u):
  """sum_d log sigmoid'(u_d) = sum_d [log_sigmoid(u_d) + log_sigmoid(-u_d)]."""
  return jnp.sum(jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u), axis=-1)


def squashed_log_prob(u, mu, log_std):
  """log p(x = sigmoid(u)) = log N(u) - sum log sigmoid'(u) -> [...]."""
  return gaussian_log_prob(u, mu, log_std) - squash_log_det(u)


def gaussian_entropy(log_std):
  """H[N(mu, sigma)] = sum_d (log sigma_d + (1 + log 2 pi) / 2) -> [...]."""
  return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)


def squashed_entropy(mu, log_std, eps):
  """Reparameterised estimate of H[sigmoid(u)], u = mu + sigma * eps.

  H[x] = H[u] + E[sum_d log sigmoid'(u_d)]; eps [..., K, D] standard normal
  noise (K samples averaged), mu / log_std [..., D] -> [...].
  """
  u = mu[..., None, :] + jnp.exp(log_std)[..., None, :] * eps
  return gaussian_entropy(log_std) + jnp.mean(squash_log_det(u), axis=-1)


def gaussian_kl(mu_a, log_std_a, mu_b, log_std_b):
  """KL(N_a || N_b) for diagonal Gaussians, summed over the last axis.

  = sum_d [log s_b - log s_a + (s_a^2 + (mu_a - mu_b)^2) / (2 s_b^2) - 1/2],
  equal to the KL of the sigmoid-squashed distributions (bijection).
  """
  var_ratio = jnp.exp(2.0 * (log_std_a - log_std_b))
  mahal = ((mu_a - mu_b) * jnp.exp(-log_std_b)) ** 2
  return jnp.sum(
      log_std_b - log_std_a + 0.5 * (var_ratio + mahal) - 0.5, axis=-1
  )


def to_polygon(u, n_vertices: int):
  """u [..., D] -> canonical polygon [..., n, 2] = canonicalize(sigmoid(u))."""
  x = jax.nn.sigmoid(u)
  return polygon.canonicalize(x.reshape(x.shape[:-1] + (n_vertices, 2)))


def to_unconstrained(vertices, eps: float = 1e-4):
  """Polygon [..., n, 2] -> u [..., 2n] = logit(clip(x, eps, 1 - eps))."""
  x = jnp.clip(jnp.asarray(vertices, jnp.float32), eps, 1.0 - eps)
  x = x.reshape(x.shape[:-2] + (-1,))
  return jnp.log(x) - jnp.log1p(-x)


# ---------------------------------------------------------------------------
# Policy API on (net, params, jh).


@functools.partial(jax.jit, static_argnames=('net',))
def mode(net: PolicyValueNet, params, jh):
  """Deterministic "mean action" canonicalize(sigmoid(mu)): jh [..., B, B]
  -> [..., n, 2]. (sigmoid(mu) is the median of x, not its mean.)"""
  mu, _, _ = net.apply(params, jh)
  return to_polygon(mu, net.n_vertices)
