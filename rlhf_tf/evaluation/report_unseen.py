"""Evaluation steps of one scene on unseen actions (job `evaluate`).

``scene_steps`` runs them in order: Fig. 2, rewards of ``eval.num_random``
random actions and sharpness; the rank correlation of reward and the
simulated inspector's score over ``eval.num_gold`` unseen actions; Fig. 3,
corner maps; Fig. 4, unseen TFs sorted by reward; reward probing (gradient
at the expert, reward ascent); the image-space gradient through the
renderer. Each step reads a ``report_setup.Setup`` on one scene
(``scene_view``) and fills the summary dict of each loss.
"""

from __future__ import annotations

import os

from absl import logging
import jax
import numpy as np

from rlhf_tf.evaluation import (
    figures,
    figures_probing,
    metrics,
    probing,
    probing_gradients,
)
from rlhf_tf.evaluation.report_setup import rewards_of, Setup
from rlhf_tf.render import polygon


def scene_steps(s: Setup, keys, summary: dict) -> None:
  """The figures and numbers of one scene, in ``summary[loss]``."""
  k_random, k_gold, k_eval, k_ascent = keys
  expert_rewards = reward_histograms(s, k_random, summary)  # Fig. 2
  rank_correlation(s, k_gold, summary)
  maps = corner_maps(s)  # Fig. 3
  evaluation_tfs(s, k_eval, summary)  # Fig. 4
  reward_probing(s, k_ascent, maps, expert_rewards, summary)
  image_space_gradient(s, summary)


def reward_histograms(s: Setup, key, summary: dict) -> dict:
  """Fig. 2: rewards of eval.num_random random actions and sharpness;
  returns the experts' rewards per loss."""
  logging.info('Fig. 2: %d random actions', s.config.eval.num_random)
  random_rewards, expert_rewards, sharp = {}, {}, {}
  for loss, p in s.params.items():
    _, random_rewards[loss] = probing.random_action_rewards(
        s.model,
        p,
        s.jh,
        key,
        num=s.config.eval.num_random,
        n_vertices=s.scene.experts.shape[1],
        mesh=s.mesh,
    )
    expert_rewards[loss] = rewards_of(s, p, s.scene.experts)
    sharp[loss] = metrics.sharpness(
        np.asarray(random_rewards[loss]), expert_rewards[loss]
    )
    summary[loss]['sharpness'] = sharp[loss]
  if s.primary:
    figures.reward_histograms(
        random_rewards,
        os.path.join(s.out_dir, 'fig2_reward_histograms.png'),
        expert_rewards_by_loss=expert_rewards,
        stats_by_loss=sharp,
    )
  return expert_rewards


def rank_correlation(s: Setup, key, summary: dict) -> None:
  """Spearman / Kendall of reward vs inspector over unseen random actions."""
  num = s.config.eval.num_gold
  logging.info(
      'rank correlation with the inspector over %d unseen actions', num
  )
  actions = np.asarray(
      polygon.random_actions(key, num, s.scene.experts.shape[1])
  )
  gold_scores = s.gold(actions)
  for loss, p in s.params.items():
    summary[loss]['rank_correlation'] = metrics.rank_correlations(
        rewards_of(s, p, actions), gold_scores
    )


def corner_maps(s: Setup) -> dict:
  """Fig. 3: the reward of each vertex at every JH pixel (the others at the
  first expert), with renders at vertex 4's low, medium and high reward;
  returns the maps per loss."""
  logging.info('Fig. 3: corner maps')
  base = s.scene.experts[0]
  maps, renders = {}, {}
  for loss, p in s.params.items():
    maps[loss] = np.asarray(
        probing.corner_maps(s.model, p, s.jh, base, mesh=s.mesh)
    )
    renders[loss] = [
        (label, xy, value, np.asarray(s.scene.render(action))[..., :3])
        for label, xy, value, action in probing.corner_map_picks(
            maps[loss], base, k=3
        )
    ]
  if s.primary:
    figures_probing.corner_plots(
        maps,
        s.jh,
        base,
        os.path.join(s.out_dir, 'fig3_corner_plots.png'),
        axes=s.scene.jh.axes,
        renders_by_loss=renders,
    )
  return maps


def evaluation_tfs(s: Setup, key, summary: dict) -> None:
  """Fig. 4: eval.num_eval_tfs unseen TFs spread from expert-like to poor
  by inspector score (augmented experts with growing shifts, and random
  actions), sorted by each loss's reward."""
  ev = s.config.eval
  logging.info('Fig. 4: %d evaluation TFs', ev.num_eval_tfs)
  k_aug, k_rand = jax.random.split(key)
  experts = s.scene.experts
  n_aug = ev.eval_candidates // 2
  pool = []
  for j in range(n_aug):
    sigma = 0.01 + 0.12 * j / max(n_aug - 1, 1)
    e = experts[j % len(experts)]
    shift = sigma * np.asarray(
        jax.random.normal(jax.random.fold_in(k_aug, j), e.shape)
    )
    pool.append(np.asarray(polygon.canonicalize(np.clip(e + shift, 0, 1))))
  pool += list(
      np.asarray(
          polygon.random_actions(
              k_rand, ev.eval_candidates - n_aug, experts.shape[1]
          )
      )
  )
  pool = np.stack(pool).astype(np.float32)
  scores = s.gold(pool)
  # Pick evenly over the score ranking, best to worst.
  order = np.argsort(-scores)
  pick = order[
      np.round(np.linspace(0, len(order) - 1, ev.num_eval_tfs)).astype(int)
  ]
  actions, gold_scores = pool[pick], scores[pick]
  images = s.scene.render_many(actions, mesh=s.mesh)[..., :3]
  rewards = {loss: rewards_of(s, p, actions) for loss, p in s.params.items()}
  if s.primary:
    figures.evaluation_grids(
        images,
        rewards,
        gold_scores,
        os.path.join(s.out_dir, 'fig4_evaluation_tfs.png'),
    )
  for loss in s.params:
    summary[loss]['eval_tfs'] = metrics.rank_correlations(
        rewards[loss], gold_scores
    )


def reward_probing(
    s: Setup, key, maps: dict, expert_rewards: dict, summary: dict
) -> None:
  """dr/dvertices at the expert and reward ascent from eval.ascent_starts
  random actions: the found TF's inspector score and its distance to the
  corner maps' optima; probing_gradients.png of the first loss."""
  ev = s.config.eval
  logging.info('probing: gradients and reward ascent')
  base = s.scene.experts[0]
  expert_gold = float(s.gold(base[None])[0])
  arrows = {}
  for loss, p in s.params.items():
    grad = np.asarray(probing_gradients.reward_gradient(s.model, p, s.jh, base))
    asc = probing_gradients.reward_ascent(
        s.model,
        p,
        s.jh,
        key,
        num_starts=ev.ascent_starts,
        steps=ev.ascent_steps,
        lr=ev.ascent_lr,
        n_vertices=base.shape[0],
    )
    area = np.asarray(asc['area'])
    rewards = np.where(area >= 1e-4, np.asarray(asc['rewards']), -np.inf)
    best = int(np.argmax(rewards))
    found = np.asarray(asc['actions'])[best]
    found_gold = float(s.gold(found[None])[0])
    summary[loss]['probing'] = dict(
        grad_at_expert=grad.tolist(),
        ascent_start_mean_reward=float(np.mean(asc['initial_rewards'])),
        ascent_final_mean_reward=float(np.mean(asc['rewards'])),
        ascent_best_reward=float(rewards[best]),
        expert_reward=float(np.mean(expert_rewards[loss])),
        found_action=found.tolist(),
        found_inspector_score=found_gold,
        expert_inspector_score=expert_gold,
        found_relative_to_expert=found_gold / max(expert_gold, 1e-9),
        corner_map_best_distance=probing.distance_to_optima(
            found, probing.corner_map_optima(maps[loss])
        ),
    )
    arrows[loss] = (grad, np.asarray(asc['actions'])[area >= 1e-4])
  if s.primary:
    grad, ascent_actions = arrows[next(iter(s.params))]
    figures_probing.gradient_arrows(
        s.jh,
        base,
        grad,
        os.path.join(s.out_dir, 'probing_gradients.png'),
        axes=s.scene.jh.axes,
        ascent_actions=ascent_actions,
    )


def image_space_gradient(s: Setup, summary: dict) -> None:
  """d(mean alpha of the rendering)/dvertices at the expert, through the
  renderer."""
  value, grad = probing_gradients.image_objective_gradient(
      s.scene, s.scene.experts[0], 'mean_alpha'
  )
  summary['image_space_gradient'] = dict(
      objective='mean_alpha', value=float(value), grad=np.asarray(grad).tolist()
  )
