"""One PPO update's objective: rollout, shaped reward, clipped loss.

The contextual-bandit PPO of ppo.py (one step per episode, so the return is
the reward and the advantage is A = R - V(s)); ``rollout`` samples
N = batch_per_scene actions per scene from pi_old, scores them and builds
the ``Batch``; ``ppo_loss`` is the loss on a minibatch of it.

KL penalty (Ziegler et al. eq. 2): per-sample reward shaping with the
log-ratio to the reference (warm-start) policy rho,

    R(s, x) = r_cons(s, a) - beta * [log pi_old(x|s) - log rho(x|s)],
    a = canonicalize(sigmoid(u).reshape(n, 2)),  x = sigmoid(u).

E_x[log pi_old - log rho] = KL(pi_old || rho), so this optimises
E[r] - beta KL. The sigmoid Jacobian cancels in the difference, so it is
computed from the Gaussian densities of u. The reported ``kl`` is this
sample estimate; ``kl_exact`` is the closed form (policy.gaussian_kl, mean
over scenes) and ``sqrt_kl`` = sqrt(kl_exact) (the x axis of Gao et al. 2022).

Conservative reward: ``reward_fn(jh [B, B], actions [N, n, 2])`` may return
[N] or an ensemble [M, N]; then r_cons = mean_M - ensemble_k * std_M. The M
members must be on one scale: raw Bradley-Terry rewards of different seeds
are not (each has a free offset), so agent/proxy_reward.py passes per-seed
z-scores against a fixed reference set (rlhf_tf.reward.ensemble).

Loss on a minibatch (pi = current params, A normalised over the whole
update's batch when normalize_advantages):

    ratio = exp(log pi(x) - log pi_old(x))              (Gaussian in u)
    L_pi  = -mean(min(ratio A, clip(ratio, 1 - eps, 1 + eps) A))
    L_V   = 0.5 mean((V(s) - R)^2)
    H     = mean(H[N(mu, sigma)] + sum_d log sigmoid'(mu + sigma * eps_noise))
    L     = L_pi + vf_coef L_V - ent_coef H,

H being the reparameterised estimate of the squashed entropy (policy.py),
eps_noise the rollout's standard-normal draws.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from rlhf_tf.agent import policy as policy_lib
from rlhf_tf.devices import mesh as mesh_lib


@flax.struct.dataclass
class Batch:
  """One update's rollout, T = S * N samples (flattened scene-major)."""

  scene: jax.Array  # [T] int32 scene index
  u: jax.Array  # [T, D] Gaussian samples
  noise: jax.Array  # [T, D] standard normal draws, u = mu + sigma * noise
  logp_old: jax.Array  # [T] Gaussian log pi_old(u)
  target: jax.Array  # [T] shaped reward R (value target)
  adv: jax.Array  # [T] advantage


def combine_ensemble(r, k: float):
  """r [S, N] or [S, M, N] -> (mean [S, N], mean - k std [S, N], std).

  The M members of r must share one scale (module docstring: standardise
  them with rlhf_tf.reward.ensemble first).
  """
  if r.ndim == 2:
    return r, r, jnp.zeros_like(r)
  mean, std = jnp.mean(r, axis=1), jnp.std(r, axis=1)
  return mean, mean - k * std, std


def score_rollout(reward_fn, jh, actions, mesh=None):
  """reward_fn over every scene: jh [S, B, B], actions [S, N, n, 2] ->
  [S, N] or [S, M, N] (ensemble).

  With a mesh (of more than one device) the N actions of every scene are
  split over its 'data' axis (``shard_map``; N padded to a multiple of the
  devices by repeating the last action): the environments of a rollout run
  on all devices, the policy update stays replicated.
  """
  score = jax.vmap(reward_fn)
  if mesh_lib.data_size(mesh) == 1:
    return score(jh, actions)
  num = actions.shape[1]
  padded = jnp.swapaxes(
      mesh_lib.pad_leading(
          jnp.swapaxes(actions, 0, 1), mesh_lib.data_size(mesh)
      ),
      0,
      1,
  )
  out_ndim = jax.eval_shape(score, jh, actions).ndim
  r = jax.shard_map(
      score,
      mesh=mesh,
      in_specs=(P(), P(None, mesh_lib.DATA)),
      out_specs=P(*([None] * (out_ndim - 1) + [mesh_lib.DATA])),
      check_vma=False,
  )(jh, padded)
  return r[..., :num]


def rollout(net, config, params, ref_params, jh, reward_fn, key, mesh=None):
  """Samples N actions per scene, scores them, builds the PPO batch.

  Args: jh [S, B, B]; reward_fn(jh [B, B], actions [N, n, 2]) -> [N] | [M, N];
    mesh: optional, splits the scoring over devices (score_rollout).
  Returns: (Batch with T = S N, info dict of scalars / [S, n, 2] mode).
  """
  s_count, n_act = jh.shape[0], config.batch_per_scene
  mu, log_std, value = net.apply(params, jh)  # [S, D], [S, D], [S]
  noise = jax.random.normal(key, (s_count, n_act, mu.shape[-1]), mu.dtype)
  u = mu[:, None] + jnp.exp(log_std)[:, None] * noise  # [S, N, D]
  r = score_rollout(
      reward_fn, jh, policy_lib.to_polygon(u, net.n_vertices), mesh
  )
  r = jnp.asarray(r, jnp.float32)
  r_mean, r_cons, r_std = combine_ensemble(r, config.ensemble_k)
  mu_ref, log_std_ref, _ = net.apply(ref_params, jh)
  logp_old = policy_lib.gaussian_log_prob(u, mu[:, None], log_std[:, None])
  logp_ref = policy_lib.gaussian_log_prob(
      u, mu_ref[:, None], log_std_ref[:, None]
  )
  kl_sample = logp_old - logp_ref  # [S, N]
  target = r_cons - config.kl_beta * kl_sample
  adv = target - value[:, None]
  if config.normalize_advantages:
    adv = (adv - jnp.mean(adv)) / (jnp.std(adv) + 1e-8)
  kl_exact = policy_lib.gaussian_kl(mu, log_std, mu_ref, log_std_ref)  # [S]
  scene = jnp.broadcast_to(
      jnp.arange(s_count, dtype=jnp.int32)[:, None], (s_count, n_act)
  )
  flat = lambda x: x.reshape((s_count * n_act,) + x.shape[2:])
  batch = Batch(
      scene=flat(scene),
      u=flat(u),
      noise=flat(noise),
      logp_old=flat(logp_old),
      target=flat(target),
      adv=flat(adv),
  )
  info = {
      'reward': jnp.mean(r_mean),
      'reward_used': jnp.mean(r_cons),
      'reward_std': jnp.mean(r_std),
      'shaped_reward': jnp.mean(target),
      'kl': jnp.mean(kl_sample),
      'kl_exact': jnp.mean(kl_exact),
      'sqrt_kl': jnp.sqrt(jnp.maximum(jnp.mean(kl_exact), 0.0)),
      'entropy': jnp.mean(policy_lib.squashed_entropy(mu, log_std, noise)),
      'log_std': jnp.mean(log_std),
      'value': jnp.mean(value),
      'mode': policy_lib.to_polygon(mu, net.n_vertices),
      'nonfinite_reward': ~jnp.all(jnp.isfinite(r)),
  }
  return batch, info


def ppo_loss(params, net, jh, batch: Batch, clip_eps, vf_coef, ent_coef):
  """Clipped PPO loss on a minibatch (module docstring). -> (loss, aux)."""
  mu, log_std, value = net.apply(params, jh)  # all S scenes, then gather
  mu, log_std, value = mu[batch.scene], log_std[batch.scene], value[batch.scene]
  logp = policy_lib.gaussian_log_prob(batch.u, mu, log_std)
  log_ratio = logp - batch.logp_old
  ratio = jnp.exp(log_ratio)
  clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
  policy_loss = -jnp.mean(jnp.minimum(ratio * batch.adv, clipped * batch.adv))
  value_loss = 0.5 * jnp.mean((value - batch.target) ** 2)
  entropy = jnp.mean(
      policy_lib.squashed_entropy(mu, log_std, batch.noise[:, None])
  )
  total = policy_loss + vf_coef * value_loss - ent_coef * entropy
  aux = {
      'total_loss': total,
      'policy_loss': policy_loss,
      'value_loss': value_loss,
      'entropy_bonus': entropy,
      'clip_frac': jnp.mean(
          (jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)
      ),
      'approx_kl': jnp.mean((ratio - 1.0) - log_ratio),
  }
  return total, aux
