"""The rewards of every seed of a reward model on one common scale.

Bradley-Terry fits only reward differences (P(a > b) = sigmoid(r(a) - r(b)),
paper eq. 1), so each trained seed s carries its own additive offset, and
its own scale: raw rewards of different seeds are not comparable (measured
on the quickstart: one L_C seed sits ~120 below the other two). The
conservative ensemble reward mean_s - k std_s over raw rewards then measures
those offsets, not the seeds' disagreement: a seed shifted by +100 changes
which action is best. So every seed's rewards are z-scored against the same
fixed reference set, R random actions on the same JH:

  z_s(JH, a) = (r_s(JH, a) - mean_ref r_s(JH, .)) / std_ref r_s(JH, .),

which is invariant to any per-seed a_s + b_s r_s (b_s > 0). The conservative
reward (agent.ppo_objective.combine_ensemble, evaluation.proposal.rank) is
taken over z_s. The reference set is drawn once from a fixed key
(``reference_actions``) and is the same for every JH, call and seed.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import polygon as polygon_lib
from rlhf_tf.reward import model as model_lib

REFERENCE_SEED = 20240613  # the reference set's key: fixed, not a run seed
MIN_STD = 1e-6  # a seed constant over the reference set: no scale to divide


def reference_actions(
    n_vertices: int, num: int = 256, seed: int = REFERENCE_SEED
) -> np.ndarray:
  """The fixed reference set: ``num`` random actions [R, n, 2]."""
  return np.asarray(
      polygon_lib.random_actions(jax.random.key(seed), num, n_vertices)
  )


def standardise(rewards, reference):
  """z-scores of rewards [..., S, N] against reference rewards [..., S, R]
  of the same seeds (module docstring); numpy or jax arrays."""
  xp = (
      jnp
      if isinstance(rewards, jax.Array) or isinstance(reference, jax.Array)
      else np
  )
  mean = xp.mean(reference, axis=-1, keepdims=True)
  std = xp.std(reference, axis=-1, keepdims=True)
  return (rewards - mean) / xp.maximum(std, MIN_STD)


def reference_stats(rewards_ref) -> dict:
  """Per-seed mean and std [S] of reference rewards [S, R] (for records)."""
  r = np.asarray(rewards_ref, np.float64)
  return dict(
      mean=r.mean(-1).round(6).tolist(), std=r.std(-1).round(6).tolist()
  )


def standardised_ensemble_fn(
    model: model_lib.RewardModel, stacked_params, reference
) -> Callable:
  """A jittable (jh [B, B], actions [N, n, 2]) -> z [S, N] over the S seeds
  of ``stacked_params`` (a leading seed axis), against ``reference``
  [R, n, 2]; the JH is encoded once per seed and call."""
  reference = jnp.asarray(reference, jnp.float32)

  def one_seed(params, jh, actions):
    z = model_lib.encode(model, params, jh)
    return (
        model_lib.score(model, params, z, actions),
        model_lib.score(model, params, z, reference),
    )

  def rewards(jh, actions):
    r, ref = jax.vmap(one_seed, in_axes=(0, None, None))(
        stacked_params, jh, actions
    )
    return standardise(r, ref)

  return rewards
