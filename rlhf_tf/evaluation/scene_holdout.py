"""Leave-one-scene-out: does the reward rank TFs on a scan it never saw?

The paper trains one reward over many scenes so that it does not overfit one
(sec. 5); what a user needs is a reward that holds on *their* scan. Here a
reward trained on every scene but one is measured on the held-out scene by
three numbers:

  decisive_accuracy  share of the held-out scene's decisive labelled pairs
                     the reward orders as the inspector did;
  spearman_rho       rank correlation of the reward with the inspector's
                     score over unseen random actions (paper's 20,000-action
                     evaluation, scored by the simulated inspector);
  ascent_relative    inspector score of the TF found by reward ascent
                     (probing_gradients.reward_ascent) over the expert TF's
                     score.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from rlhf_tf.evaluation import metrics, probing_gradients
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.render import polygon
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward import predict


@dataclasses.dataclass(frozen=True)
class Fold:
  """One leave-one-scene-out split: train on ``train_ids`` only."""

  held_out: str
  train_ids: tuple

  def __post_init__(self):
    if self.held_out in self.train_ids:
      raise ValueError(
          f'held-out scene {self.held_out!r} is among the '
          f'training scenes {list(self.train_ids)}'
      )
    if not self.train_ids:
      raise ValueError(f'no training scene left for {self.held_out!r}')


def folds(
    scene_ids: Sequence[str],
    held_out: Sequence[str] = (),
    train_pool: Sequence[str] = (),
) -> list[Fold]:
  """One fold per held-out scene (default: every scene in turn).

  Args:
    scene_ids: every scene of the dataset.
    held_out: the scenes to hold out, each in its own fold ('' = all).
    train_pool: the scenes a fold may train on (default: all); the held-out
      scene is always removed from it.

  Raises:
    ValueError: naming an unknown scene or a fold without training scenes.
  """
  scene_ids = list(scene_ids)
  for name, ids in (('held_out', held_out), ('train_pool', train_pool)):
    unknown = [s for s in ids if s not in scene_ids]
    if unknown:
      raise ValueError(
          f'{name}: unknown scene(s) {unknown}; the dataset ' f'has {scene_ids}'
      )
  pool = list(train_pool) or scene_ids
  return [
      Fold(h, tuple(s for s in pool if s != h))
      for h in (list(held_out) or scene_ids)
  ]


def reward_folds(fold_list: Sequence[Fold]) -> dict[str, str]:
  """{held-out scene: the held-out scene of the first fold training on the
  same scenes}: folds whose training scenes are equal (a ``train_pool``
  without them, e.g. validation scenes) share one reward, trained once."""
  first = {}
  return {
      f.held_out: first.setdefault(f.train_ids, f.held_out) for f in fold_list
  }


def held_out_numbers(
    stacked_params,
    reward_cfg,
    jh: np.ndarray,
    actions: np.ndarray,
    pairs: np.ndarray,
    target: np.ndarray,
    gold_actions: np.ndarray,
    gold_scores: np.ndarray,
    expert: np.ndarray,
    expert_score: float,
    gold: Callable[[np.ndarray], np.ndarray],
    key,
    ascent_starts: int = 32,
    ascent_steps: int = 200,
    ascent_lr: float = 0.01,
) -> dict:
  """The three numbers of a reward on one held-out scene.

  The reward is the seeds' mean standardised reward
  (predict.ensemble_mean_rewards); with one seed it orders actions as that
  seed's raw reward does.

  Args:
    stacked_params, reward_cfg: the trained reward model's parameters with
      a leading seed axis [S, ...] (as checkpointed) and ``config.reward``.
    jh: [B, B] the held-out scene's JH image.
    actions: [A, n, 2] its labelled actions; pairs [P, 2] (left, right)
      indices into them, target [P] P(left preferred) (1, 0, 0.5).
    gold_actions: [G, n, 2] unseen random actions, gold_scores [G] their
      inspector scores.
    expert: [n, 2] the expert TF, expert_score its inspector score.
    gold: actions [k, n, 2] -> inspector scores [k] (for the ascent's TF).
    key: PRNG key of the ascent's starts (the same starts for every seed).

  Returns:
    dict: decisive_accuracy, num_decisive, spearman_rho, kendall_tau,
    ascent_inspector_score, expert_inspector_score, ascent_relative,
    ascent_action.
  """
  reward_model = model_lib.model_from_config(reward_cfg.model)

  def reward(a):
    return predict.ensemble_mean_rewards(stacked_params, reward_cfg, jh, a)

  r = reward(actions)
  pairs = np.asarray(pairs)
  pm = metrics.pair_metrics(r[pairs[:, 0]], r[pairs[:, 1]], target)
  ranks = metrics.rank_correlations(reward(gold_actions), gold_scores)
  # Reward ascent under each seed; the ensemble picks among their ends.
  num_seeds = int(jax.tree_util.tree_leaves(stacked_params)[0].shape[0])
  ends = []
  for s in range(num_seeds):
    asc = probing_gradients.reward_ascent(
        reward_model,
        jax.tree_util.tree_map(lambda x, s=s: x[s], stacked_params),
        jh,
        key,
        num_starts=ascent_starts,
        steps=ascent_steps,
        lr=ascent_lr,
        n_vertices=expert.shape[0],
    )
    ends.append((np.asarray(asc['actions']), np.asarray(asc['area'])))
  ends, area = (np.concatenate(e) for e in zip(*ends))
  # Collapsed polygons (zero area) are no TF; all collapsed: the first.
  ranked = np.where(area >= 1e-4, reward(ends), -np.inf)
  found = ends[int(np.argmax(ranked))]
  found_score = float(gold(found[None])[0])
  return dict(
      decisive_accuracy=pm['accuracy'],
      num_decisive=int(pm['num_decisive']),
      spearman_rho=ranks['spearman_rho'],
      kendall_tau=ranks['kendall_tau'],
      ascent_inspector_score=found_score,
      expert_inspector_score=float(expert_score),
      ascent_relative=found_score / max(float(expert_score), 1e-9),
      ascent_action=found.tolist(),
  )


def gold_actions(key, scene_hash: int, num: int, n_vertices: int):
  """The unseen random actions [num, n, 2] a scene is evaluated on."""
  return np.asarray(
      polygon.random_actions(
          jax.random.fold_in(key, scene_hash), num, n_vertices
      )
  )


def error_breakdown(
    rewards: np.ndarray,
    crit: np.ndarray,
    pairs: np.ndarray,
    target: np.ndarray,
    icfg: inspector_lib.InspectorConfig,
    num_bins: int = 5,
) -> dict:
  """Where a reward's decisive-pair errors lie on one scene.

  Args:
    rewards: [A] the reward of each labelled action.
    crit: [A, 5] the inspector's criteria of each action.
    pairs: [P, 2] (left, right); target [P] 1, 0 or 0.5 (ties are skipped).
    icfg: the inspector whose decisions made ``target`` (noiseless).
    num_bins: quantile bins of |score difference|.

  Returns:
    dict: score_accuracy (how often the inspector's own scalar score orders
    the decisive pairs as its priority list did: the most a reward that
    learnt the score could reach); by_score_gap (per quantile bin of
    |score difference|: lo, hi, n, accuracy); by_criterion (the criterion
    that decided: n, accuracy); one_fails / both_pass (pairs where one or
    neither rendering fails the first priority: n, accuracy).
  """
  pairs, target = np.asarray(pairs), np.asarray(target)
  decisive = target != 0.5
  left, right = pairs[decisive, 0], pairs[decisive, 1]
  wins = target[decisive] == 1.0
  r = np.asarray(rewards, np.float64)
  right_call = (r[left] > r[right]) == wins
  score = inspector_lib.score(crit, icfg)
  gap = np.abs(score[left] - score[right])
  edges = np.quantile(gap, np.linspace(0.0, 1.0, num_bins + 1))
  which = np.clip(
      np.searchsorted(edges, gap, side='right') - 1, 0, num_bins - 1
  )
  tol = np.asarray(icfg.tolerances)
  over = np.abs(crit[left] - crit[right]) > tol  # [D, 5]
  decider = np.argmax(over, axis=1)

  def part(mask):
    return dict(
        n=int(mask.sum()),
        accuracy=float(right_call[mask].mean()) if mask.any() else float('nan'),
    )

  one_fails = np.minimum(crit[left, 0], crit[right, 0]) < icfg.fail_below
  return dict(
      score_accuracy=float(((score[left] > score[right]) == wins).mean()),
      by_score_gap=[
          dict(lo=float(edges[k]), hi=float(edges[k + 1]), **part(which == k))
          for k in range(num_bins)
      ],
      by_criterion={
          name: part(decider == k)
          for k, name in enumerate(inspector_lib.CRITERIA)
          if np.any(decider == k)
      },
      one_fails=part(one_fails),
      both_pass=part(~one_fails),
  )
