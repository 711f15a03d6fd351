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
                     (probing.reward_ascent) over the expert TF's score.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from rlhf_tf.evaluation import metrics
from rlhf_tf.evaluation import probing
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
      raise ValueError(f'held-out scene {self.held_out!r} is among the '
                       f'training scenes {list(self.train_ids)}')
    if not self.train_ids:
      raise ValueError(f'no training scene left for {self.held_out!r}')


def folds(scene_ids: Sequence[str], held_out: Sequence[str] = (),
          train_pool: Sequence[str] = ()) -> list[Fold]:
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
      raise ValueError(f'{name}: unknown scene(s) {unknown}; the dataset '
                       f'has {scene_ids}')
  pool = list(train_pool) or scene_ids
  return [Fold(h, tuple(s for s in pool if s != h))
          for h in (list(held_out) or scene_ids)]


def held_out_numbers(params, reward_cfg, jh: np.ndarray, actions: np.ndarray,
                     pairs: np.ndarray, target: np.ndarray,
                     gold_actions: np.ndarray, gold_scores: np.ndarray,
                     expert: np.ndarray, expert_score: float,
                     gold: Callable[[np.ndarray], np.ndarray], key,
                     ascent_starts: int = 32, ascent_steps: int = 200,
                     ascent_lr: float = 0.01) -> dict:
  """The three numbers of a reward on one held-out scene.

  Args:
    params, reward_cfg: the trained reward model (``config.reward``).
    jh: [B, B] the held-out scene's JH image.
    actions: [A, n, 2] its labelled actions; pairs [P, 2] (left, right)
      indices into them, target [P] P(left preferred) (1, 0, 0.5).
    gold_actions: [G, n, 2] unseen random actions, gold_scores [G] their
      inspector scores.
    expert: [n, 2] the expert TF, expert_score its inspector score.
    gold: actions [k, n, 2] -> inspector scores [k] (for the ascent's TF).
    key: PRNG key of the ascent's starts.

  Returns:
    dict: decisive_accuracy, num_decisive, spearman_rho, kendall_tau,
    ascent_inspector_score, expert_inspector_score, ascent_relative,
    ascent_action.
  """
  reward_model = model_lib.model_from_config(reward_cfg.model)
  r = predict.predict_rewards(params, reward_cfg, jh, actions)
  pairs = np.asarray(pairs)
  pm = metrics.pair_metrics(r[pairs[:, 0]], r[pairs[:, 1]], target)
  gold_r = predict.predict_rewards(params, reward_cfg, jh, gold_actions)
  ranks = metrics.rank_correlations(gold_r, gold_scores)
  asc = probing.reward_ascent(reward_model, params, jh, key,
                              num_starts=ascent_starts, steps=ascent_steps,
                              lr=ascent_lr, n_vertices=expert.shape[0])
  area = np.asarray(asc['area'])
  rewards = np.where(area >= 1e-4, np.asarray(asc['rewards']), -np.inf)
  found = np.asarray(asc['actions'])[int(np.argmax(rewards))]
  found_score = float(gold(found[None])[0])
  return dict(decisive_accuracy=pm['accuracy'],
              num_decisive=int(pm['num_decisive']),
              spearman_rho=ranks['spearman_rho'],
              kendall_tau=ranks['kendall_tau'],
              ascent_inspector_score=found_score,
              expert_inspector_score=float(expert_score),
              ascent_relative=found_score / max(float(expert_score), 1e-9),
              ascent_action=found.tolist())


def gold_actions(key, scene_hash: int, num: int, n_vertices: int):
  """The unseen random actions [num, n, 2] a scene is evaluated on."""
  return np.asarray(polygon.random_actions(
      jax.random.fold_in(key, scene_hash), num, n_vertices))
