"""The reward PPO maximises (the proxy of Gao et al. 2022): a trained
reward model of <reward_dir> as a jittable function of (JH, actions).

Without ``agent.ensemble``: the seed the reward's selection rule picked
(<reward_dir>/summary.json), rewards [N]. With it: every seed, rewards
[M, N], each seed's z-scored against a fixed set of
``agent.reference_actions`` random actions on the same JH
(rlhf_tf.reward.ensemble): raw rewards of different seeds differ by an
offset Bradley-Terry leaves free, which PPO's conservative mean - k std
(rlhf_tf.agent.ppo_objective) must not see.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlhf_tf.reward import ensemble as ensemble_lib
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward import predict


def load_reward_fn(config, reward_dir: str):
  """jittable (jh [B, B], actions [N, n, 2]) -> [M, N] (ensemble) or [N].

  Args:
    config: the experiment config; reads ``agent.loss``, ``agent.ensemble``,
      ``agent.reference_actions`` and ``reward.model``.
    reward_dir: a trained reward's folder (<loss>/checkpoints, summary.json).
  """
  loss, a = config.agent.loss, config.agent
  stacked = predict.load_stacked_params(reward_dir, loss)
  if not a.ensemble:
    seed = predict.selected_runs(reward_dir)[loss]['seed']
    stacked = jax.tree_util.tree_map(lambda x: x[seed : seed + 1], stacked)
  stacked = jax.tree_util.tree_map(jnp.asarray, stacked)
  model = model_lib.model_from_config(config.reward.model)
  if a.ensemble:
    return ensemble_lib.standardised_ensemble_fn(
        model,
        stacked,
        ensemble_lib.reference_actions(model.n_vertices, a.reference_actions),
    )

  def one(params, jh, actions):
    return model_lib.score(
        model, params, model_lib.encode(model, params, jh), actions
    )

  def reward_fn(jh, actions):
    return jax.vmap(one, in_axes=(0, None, None))(stacked, jh, actions)[0]

  return reward_fn
