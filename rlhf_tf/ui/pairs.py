"""Which pair an inspector sees next: leases, the overlap target, selection.

Leases (rl-teacher's 2-minute lease): a pair handed to an inspector is held
for ``lease_seconds`` so that a second inspector asking at the same time gets
another pair -- unless the pair belongs to the overlap set and still wants a
second rating. An inspector holds at most one lease (the pair on screen);
asking again while it is valid returns the same pair in the same order, so a
page reload does not reshuffle. The lease table: ``rlhf_tf.ui.leases``.

Overlap (Label Studio's overlap, Potato's per-instance target): a pair is in
the overlap set when a seeded hash of (scene, pair) falls below ``overlap``;
such pairs want 2 distinct inspectors, the others 1. "Raters" of a pair are
inspectors with an effective (non-skip, not undone) vote plus inspectors
holding a live lease on it. A skip lets another inspector take the pair.

Selection among the eligible pairs (not judged or skipped by the inspector,
fewer other raters than the pair's target):
- 'random': overlap pairs already rated by someone else come first (they
  complete an agreement sample), then a seeded per-inspector permutation, so
  inspectors start in different places and the order survives restarts.
- 'disagreement': active querying. Given ensemble rewards r[m, a] of M reward
  models, the score of a pair (a, b) is the variance over models of
  sigmoid(r[m, a] - r[m, b]): the pair on which the ensemble disagrees most
  about the preference probability is asked first (ties: the random order).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from typing import Callable, Iterable, NamedTuple, Optional

import numpy as np

from rlhf_tf.ui.leases import Lease, LeaseTable

SELECTIONS = ('random', 'disagreement')


class Candidate(NamedTuple):
  """A pair of a scene; action_a < action_b as in the store."""

  scene_id: str
  pair_id: int
  action_a: int
  action_b: int


def unit_hash(*parts) -> float:
  """A deterministic number in [0, 1) (hash() is salted per process)."""
  digest = hashlib.sha256(json.dumps(parts).encode()).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0**64


# Memoised: every handout ranks all pairs, and sha256 per pair per request
# would dominate the request time.
@functools.lru_cache(maxsize=1 << 18)
def in_overlap_set(
    seed: int, scene_id: str, pair_id: int, overlap: float
) -> bool:
  """Whether a pair should get a second inspector (fraction ``overlap``)."""
  return unit_hash(seed, 'overlap', scene_id, int(pair_id)) < overlap


@functools.lru_cache(maxsize=1 << 18)
def order_key(seed: int, inspector: str, scene_id: str, pair_id: int) -> float:
  """The inspector's seeded random rank of a pair (a fixed permutation)."""
  return unit_hash(seed, 'order', inspector, scene_id, int(pair_id))


def target_raters(
    seed: int, scene_id: str, pair_id: int, overlap: float
) -> int:
  return 2 if in_overlap_set(seed, scene_id, pair_id, overlap) else 1


def disagreement_scores(rewards, candidates: Iterable[Candidate]) -> np.ndarray:
  """Var over models of sigmoid(r[m, a] - r[m, b]) per candidate pair.

  Args:
    rewards: [M, A] rewards of A actions under M ensemble members (M >= 1).
    candidates: pairs whose actions index the A axis.
  """
  r = np.asarray(rewards, np.float64)
  if r.ndim != 2 or r.shape[0] < 1 or not np.all(np.isfinite(r)):
    raise ValueError(
        f'ensemble rewards must be a finite [M, A] array; got '
        f'shape {r.shape}'
    )
  cands = list(candidates)
  if not cands:
    return np.zeros((0,), np.float64)
  a = np.asarray([c.action_a for c in cands])
  b = np.asarray([c.action_b for c in cands])
  if max(a.max(), b.max()) >= r.shape[1]:
    raise ValueError(
        f'ensemble rewards cover {r.shape[1]} actions; pairs '
        f'reference action {max(a.max(), b.max())}'
    )
  p = 1.0 / (1.0 + np.exp(-(r[:, a] - r[:, b])))  # [M, P]
  return p.var(axis=0)


def eligible(
    candidates: Iterable[Candidate],
    inspector: str,
    judged: set,
    raters: dict,
    leased: dict,
    overlap: float,
    seed: int,
) -> list[tuple[Candidate, int]]:
  """(pair, number of other raters) for pairs the inspector may get now."""
  out = []
  for c in candidates:
    key = (c.scene_id, c.pair_id)
    if key in judged:
      continue
    others = (raters.get(key, set()) | leased.get(key, set())) - {inspector}
    if len(others) < target_raters(seed, c.scene_id, c.pair_id, overlap):
      out.append((c, len(others)))
  return out


def choose(
    candidates: Iterable[Candidate],
    inspector: str,
    judged: set,
    raters: dict,
    leased: dict,
    overlap: float,
    seed: int,
    selection: str = 'random',
    ensemble_rewards: Optional[Callable] = None,
) -> Optional[Candidate]:
  """The next pair for an inspector (see the module docstring), or None."""
  pool = eligible(candidates, inspector, judged, raters, leased, overlap, seed)
  return pick_from(pool, inspector, seed, selection, ensemble_rewards)


def pick_from(
    pool,
    inspector: str,
    seed: int,
    selection: str = 'random',
    ensemble_rewards: Optional[Callable] = None,
) -> Optional[Candidate]:
  """The best of the ``eligible`` (pair, other raters) items, or None."""
  if selection not in SELECTIONS:
    raise ValueError(
        f'selection must be one of {SELECTIONS}; got ' f'{selection!r}'
    )
  if not pool:
    return None

  def shuffle_key(c):
    return order_key(seed, inspector, c.scene_id, c.pair_id)

  if selection == 'random':
    # Completing second ratings first makes agreement numbers appear early.
    return min(pool, key=lambda item: (item[1] == 0, shuffle_key(item[0])))[0]
  if ensemble_rewards is None:
    raise ValueError("selection='disagreement' needs ensemble_rewards")
  best, best_key = None, None
  for scene_id in sorted({c.scene_id for c, _ in pool}):
    in_scene = [c for c, _ in pool if c.scene_id == scene_id]
    scores = disagreement_scores(ensemble_rewards(scene_id), in_scene)
    for c, s in zip(in_scene, scores):
      key = (-float(s), shuffle_key(c))
      if best_key is None or key < best_key:
        best, best_key = c, key
  return best


def shown_order(
    seed: int, inspector: str, candidate: Candidate, nonce: int
) -> tuple[int, int]:
  """Left/right order of a handout: a fair seeded coin per (inspector, pair,
  handout number), so the side carries no information about the action."""
  flip = (
      unit_hash(
          seed,
          'side',
          inspector,
          candidate.scene_id,
          candidate.pair_id,
          int(nonce),
      )
      < 0.5
  )
  a, b = candidate.action_a, candidate.action_b
  return (b, a) if flip else (a, b)


class Dispenser:
  """Hands out pairs of some scenes of a store (one per server process).

  ``store`` arguments are the calling thread's ``PreferenceStore`` (SQLite
  connections are per thread); the dispenser itself keeps only leases.
  """

  def __init__(
      self,
      scene_ids,
      lease_seconds: float = 120.0,
      overlap: float = 0.0,
      seed: int = 0,
      selection: str = 'random',
      ensemble_rewards: Optional[Callable] = None,
      clock: Callable[[], float] = time.time,
  ):
    if not 0.0 <= float(overlap) <= 1.0:
      raise ValueError(f'overlap must be in [0, 1]; got {overlap!r}')
    if selection not in SELECTIONS:
      raise ValueError(
          f'selection must be one of {SELECTIONS}; got ' f'{selection!r}'
      )
    if selection == 'disagreement' and ensemble_rewards is None:
      raise ValueError("selection='disagreement' needs ensemble_rewards")
    self.scene_ids = tuple(scene_ids)
    self.overlap = float(overlap)
    self.seed = int(seed)
    self.selection = selection
    self.ensemble_rewards = ensemble_rewards
    self.leases = LeaseTable(lease_seconds, clock)

  def candidates(self, store) -> list[Candidate]:
    return [Candidate(*p) for s in self.scene_ids for p in store.pairs(s)]

  def raters(self, store) -> dict:
    """{(scene, pair): human inspectors with an effective vote on it}.

    Only human votes count: a store that also holds the simulated
    inspector's answers to every pair still hands the pairs to people.
    """
    out: dict = {}
    for s in self.scene_ids:
      for v in store.effective_votes(scene_id=s, source='human'):
        out.setdefault((v.scene_id, v.pair_id), set()).add(v.inspector)
    return out

  def _handout_number(self, store, inspector, c: Candidate) -> int:
    return store.conn.execute(
        'SELECT count(*) FROM votes WHERE inspector = ? AND scene_id = ? AND '
        'pair_id = ?',
        (inspector, c.scene_id, c.pair_id),
    ).fetchone()[0]

  def next_pair(self, store, inspector: str) -> tuple[Optional[Lease], int]:
    """(lease of the pair to show or None when done, eligible pair count).

    The lease lock is held from reading the raters to granting, so two
    inspectors asking at once cannot both take a pair meant for one.
    """
    with self.leases.lock:
      judged = store.judged_pairs(inspector)
      current = self.leases.current(inspector)
      cands = self.candidates(store)
      if current and (current.scene_id, current.pair_id) not in judged:
        n = len(
            eligible(
                cands,
                inspector,
                judged,
                self.raters(store),
                self.leases.holders(),
                self.overlap,
                self.seed,
            )
        )
        return current, n
      self.leases.release(inspector)
      raters, leased = self.raters(store), self.leases.holders()
      pool = eligible(
          cands, inspector, judged, raters, leased, self.overlap, self.seed
      )
      pick = pick_from(
          pool, inspector, self.seed, self.selection, self.ensemble_rewards
      )
      if pick is None:
        return None, 0
      left, right = shown_order(
          self.seed,
          inspector,
          pick,
          self._handout_number(store, inspector, pick),
      )
      return self.leases.grant(
          inspector, pick.scene_id, pick.pair_id, left, right
      ), len(pool)

  def give_back(
      self,
      inspector: str,
      scene_id: str,
      pair_id: int,
      left_action: int,
      right_action: int,
  ) -> Lease:
    """Lease a pair again in a given order (after an undo: the inspector
    answers the pair they withdrew, as it was shown)."""
    with self.leases.lock:
      return self.leases.grant(
          inspector, scene_id, pair_id, left_action, right_action
      )
