"""Fewer labels for the same reward: the two-stage label protocol (sec. 5).

The paper labels pairs of uniformly random actions and suggests placing
actions "in the critical range of the JH" instead. Two stages:

  1. Label a share of the budget as uniform pairs of the paper's action set
     and train an ensemble (the reward's seeds).
  2. Draw many random candidate actions, keep those the ensemble rates high
     or disagrees on (``new_actions``), and label the pairs of the grown
     action set on which the ensemble's P(a > b) disagrees most
     (``disagreement_pairs``), or, so that every new action is labelled,
     each new action against the partners it is most disputed with
     (``partner_pairs``). The job (jobs/label_protocols.py) may do this in
     rounds, the ensemble refit on every label so far before each.

Why many new actions: a reward is scored on actions it never saw, and the
paper's set D has only 100 distinct actions; more labels on the same pairs
of D stop helping early (uniform pairs: Spearman 0.62 at 1,000 labels and
still 0.62 at 4,000, experiments/two_stage.py). Labels spread over many
well-chosen new actions keep adding information.

Everything here works on ensemble rewards (numbers), is deterministic from
its key, and knows nothing of how the rewards were made.
"""

from __future__ import annotations

import jax
import numpy as np

from rlhf_tf.render import polygon


def _standardise(rewards: np.ndarray) -> np.ndarray:
  """Each seed's rewards [S, N] to zero mean, unit std (seeds' reward
  scales are arbitrary: BT is invariant to a shift)."""
  r = np.asarray(rewards, np.float64)
  if r.ndim != 2:
    raise ValueError(f'ensemble rewards must be [seeds, N], got {r.shape}')
  std = r.std(axis=1, keepdims=True)
  return (r - r.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def candidate_actions(key, num: int, n_vertices: int) -> np.ndarray:
  """[num, n, 2] uniformly random candidate actions (canonical)."""
  return np.asarray(polygon.random_actions(key, num, n_vertices), np.float32)


def new_actions(
    rewards: np.ndarray, num_high: int, num_disagree: int
) -> np.ndarray:
  """Indices of the candidates to label next.

  Args:
    rewards: [S, M] ensemble rewards of M candidates.
    num_high: how many with the highest mean (standardised) reward.
    num_disagree: then how many of the rest with the largest spread of the
      standardised reward across seeds.

  Returns:
    int [num_high + num_disagree] distinct indices (fewer if M is smaller),
    high ones first; ties broken by index, so the choice is deterministic.
  """
  z = _standardise(rewards)
  mean, spread = z.mean(axis=0), z.std(axis=0)
  order_high = np.lexsort((np.arange(z.shape[1]), -mean))
  high = order_high[:num_high]
  rest = np.setdiff1d(np.arange(z.shape[1]), high)
  order_spread = rest[np.lexsort((rest, -spread[rest]))]
  return np.concatenate([high, order_spread[:num_disagree]]).astype(np.int64)


def pair_disagreement(rewards: np.ndarray, pairs: np.ndarray) -> np.ndarray:
  """[P] std across seeds of sigmoid(r_s[a] - r_s[b]) for pairs [P, 2]."""
  r = np.asarray(rewards, np.float64)
  pairs = np.asarray(pairs)
  p = 1.0 / (1.0 + np.exp(-(r[:, pairs[:, 0]] - r[:, pairs[:, 1]])))
  return p.std(axis=0)


def disagreement_pairs(
    key,
    rewards: np.ndarray,
    num_pairs: int,
    exclude=(),
    num_candidates: int = 20000,
) -> np.ndarray:
  """The ``num_pairs`` pairs [num_pairs, 2] (a < b) to label next.

  Candidate pairs are drawn uniformly from the A actions (the key decides
  which, and the left/right order shown), minus ``exclude`` (pairs already
  labelled, either order); the ones with the largest pair_disagreement
  win, ties broken by draw order.

  Args:
    key: PRNG key.
    rewards: [S, A] ensemble rewards of the action set.
    num_pairs: labels to ask for.
    exclude: iterable of (a, b) pairs not to ask again.
    num_candidates: candidate pairs drawn (capped at all A (A - 1) / 2).
  """
  num_actions = np.shape(rewards)[1]
  total = num_actions * (num_actions - 1) // 2
  done = {(min(int(a), int(b)), max(int(a), int(b))) for a, b in exclude}
  k_draw, k_order = jax.random.split(key)
  draw = min(int(num_candidates), total)
  # Draw pair ranks without replacement, decode them to (a < b).
  ranks = np.asarray(jax.random.choice(k_draw, total, (draw,), replace=False))
  a = (
      num_actions
      - 2
      - np.floor(
          np.sqrt(-8.0 * ranks + 4.0 * num_actions * (num_actions - 1) - 7)
          / 2.0
          - 0.5
      )
  ).astype(np.int64)
  b = (
      ranks
      + a
      + 1
      - num_actions * (num_actions - 1) // 2
      + (num_actions - a) * ((num_actions - a) - 1) // 2
  ).astype(np.int64)
  keep = np.array([(int(x), int(y)) not in done for x, y in zip(a, b)], bool)
  pairs = np.stack([a, b], axis=-1)[keep]
  score = pair_disagreement(rewards, pairs)
  order = np.lexsort((np.arange(len(pairs)), -score))[:num_pairs]
  chosen = pairs[order]
  flip = np.asarray(jax.random.bernoulli(k_order, 0.5, (len(chosen),)))
  return np.where(flip[:, None], chosen[:, ::-1], chosen)


def partner_pairs(
    key,
    rewards: np.ndarray,
    new: np.ndarray,
    per_action: int,
    exclude=(),
    num_partners: int = 64,
) -> np.ndarray:
  """``per_action`` pairs [len(new) * per_action, 2] for each new action.

  For every index in ``new``, ``num_partners`` partner actions are drawn
  uniformly from the A actions (without itself; the key decides which, and
  the left/right order shown); the partners whose pair with it the ensemble
  disagrees on most (pair_disagreement) win, ties broken by draw order. A
  pair already in ``exclude`` (either order) or chosen before is skipped.

  Args:
    key: PRNG key.
    rewards: [S, A] ensemble rewards of the action set.
    new: indices of the actions that need labels.
    per_action: pairs per new action.
    exclude: iterable of (a, b) pairs not to ask again.
    num_partners: candidate partners drawn per new action (capped at A-1).
  """
  num_actions = np.shape(rewards)[1]
  done = {(min(int(a), int(b)), max(int(a), int(b))) for a, b in exclude}
  k_draw, k_order = jax.random.split(key)
  draw = min(int(num_partners), num_actions - 1)
  chosen = []
  for i, a in enumerate(np.asarray(new, np.int64)):
    # Partners from the A - 1 others: draw from [0, A - 1), skip over a.
    others = np.asarray(
        jax.random.choice(
            jax.random.fold_in(k_draw, i),
            num_actions - 1,
            (draw,),
            replace=False,
        )
    )
    others = others + (others >= a)
    keep = [b for b in others if (min(a, b), max(a, b)) not in done]
    if not keep:
      continue
    pairs = np.stack([np.full(len(keep), a), np.asarray(keep)], axis=-1)
    score = pair_disagreement(rewards, pairs)
    for b in pairs[np.lexsort((np.arange(len(pairs)), -score)), 1][:per_action]:
      done.add((min(a, int(b)), max(a, int(b))))
      chosen.append((a, int(b)))
  chosen = np.asarray(chosen, np.int64).reshape(-1, 2)
  flip = np.asarray(jax.random.bernoulli(k_order, 0.5, (len(chosen),)))
  return np.where(flip[:, None], chosen[:, ::-1], chosen)
