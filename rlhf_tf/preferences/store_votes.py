"""The vote log: recording votes and undos, effective votes, training data.

``VoteLog`` is a mixin of ``PreferenceStore`` (it needs the store's ``conn``
and ``transaction()``); use it through ``rlhf_tf.preferences.store``.

The log is append-only (triggers refuse UPDATE and DELETE). Undo is an event
(``kind='undo'``, ``undoes_event_id``) that copies the scene, pair and shown
order of the vote it withdraws.

Effective votes are the vote events that no undo targets and whose choice is
not 'skip'. An inspector who votes twice on a pair keeps both votes: each is
an independent noisy judgement (Bradley-Terry weighs them, and repeats
measure the inspector's consistency). ``latest_only=True`` keeps only each
inspector's latest effective vote per pair instead.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Iterable, NamedTuple, Optional, Sequence

from rlhf_tf.preferences.store_checks import (
    check_int,
    check_one_of,
    check_optional_text,
    check_text,
    check_vote_row,
    insert_row,
)
from rlhf_tf.preferences.store_schema import (
    CHOICES,
    SOURCES,
    VoteError,
)

# mu of eq. (4): the probability mass on the left rendering; ties (1/2, 1/2).
# 'both_bad' is a tie of two failures: 1/2 when training treats it as a tie
# (training_examples' both_bad='tie', the default), else dropped.
TARGETS = {'left': 1.0, 'right': 0.0, 'equal': 0.5, 'both_bad': 0.5}
BOTH_BAD_RULES = ('tie', 'drop')


class VoteEvent(NamedTuple):
  """One row of the vote log (a vote, or an undo of an earlier vote)."""

  event_id: int
  kind: str  # 'vote' or 'undo'
  scene_id: str
  pair_id: int
  left_action: int
  right_action: int
  choice: Optional[str]  # None for undo events
  undoes_event_id: Optional[int]  # set for undo events only
  inspector: str
  source: str
  session: Optional[str]
  shown_at: Optional[float]
  answered_at: Optional[float]
  created: float
  # The view both renderings were shown at when the answer was given (schema
  # version 3; None for older votes and undo events): the orbit azimuth in
  # degrees (rlhf_tf.render.camera) and the render key of the images shown
  # (the renders table's key: the exact PNGs the inspector saw).
  view_azimuth: Optional[float] = None
  render_key: Optional[str] = None


class Example(NamedTuple):
  """A training example: target = P(left preferred) = mu_left of eq. (4)."""

  scene_id: str
  left_action: int
  right_action: int
  target: float


VOTE_COLUMNS = VoteEvent._fields


_VOTE_ARGS = frozenset(
    (
        'scene_id',
        'pair_id',
        'left_action',
        'right_action',
        'choice',
        'inspector',
        'source',
        'session',
        'shown_at',
        'answered_at',
        'view_azimuth',
        'render_key',
    )
)


def _unit_hash(*parts) -> float:
  """A deterministic number in [0, 1) from JSON-able parts (not hash(): that
  is salted per process)."""
  digest = hashlib.sha256(json.dumps(parts).encode()).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0**64


def split_examples(
    examples: Iterable[Example],
    held_out_fraction: float,
    seed: int,
    by: str = 'pair',
):
  """Deterministic (train, held_out) split of training examples.

  by='pair': a pair (scene, unordered actions) is held out when a hash of
  (seed, scene, pair) falls below ``held_out_fraction``, so all votes on a pair
  land on the same side, and the side of a pair never changes as votes arrive.
  by='action': each (scene, action) is held out by the same hash rule; an
  example is held out when both its actions are, trained on when neither is,
  and DROPPED from both sides when it mixes the two -- held-out actions never
  appear in training. About fraction^2 of the pairs end up held out.
  """
  try:
    fraction = float(held_out_fraction)
  except (TypeError, ValueError):
    fraction = float('nan')
  if isinstance(held_out_fraction, bool) or not 0.0 <= fraction <= 1.0:
    raise ValueError(
        f'held_out_fraction must be in [0, 1]; got ' f'{held_out_fraction!r}'
    )
  check_one_of(by, ('pair', 'action'), 'by', ValueError)
  seed = check_int(seed, 'seed', ValueError)
  train, held_out = [], []
  for ex in examples:
    scene, a, b = ex[0], int(ex[1]), int(ex[2])
    if by == 'pair':
      out = _unit_hash(seed, 'pair', scene, min(a, b), max(a, b)) < fraction
      (held_out if out else train).append(ex)
      continue
    out_a = _unit_hash(seed, 'action', scene, a) < fraction
    out_b = _unit_hash(seed, 'action', scene, b) < fraction
    if out_a and out_b:
      held_out.append(ex)
    elif not out_a and not out_b:
      train.append(ex)
  return train, held_out


class VoteLog:
  """Vote-log methods of ``PreferenceStore``."""

  def record_vote(
      self,
      scene_id: str,
      pair_id: int,
      left_action: int,
      right_action: int,
      choice: str,
      inspector: str,
      source: str = 'human',
      session: Optional[str] = None,
      shown_at: Optional[float] = None,
      answered_at: Optional[float] = None,
      view_azimuth: Optional[float] = None,
      render_key: Optional[str] = None,
  ) -> int:
    """Append one answer (a CHOICES entry: left, right, equal, both_bad or
    skip); its event id. ``view_azimuth`` (degrees) and ``render_key`` name
    the view the two renderings were shown at, when known."""
    row = dict(
        kind='vote',
        scene_id=scene_id,
        pair_id=pair_id,
        left_action=left_action,
        right_action=right_action,
        choice=choice,
        undoes_event_id=None,
        inspector=inspector,
        source=source,
        session=session,
        shown_at=shown_at,
        answered_at=answered_at,
        created=time.time(),
        view_azimuth=view_azimuth,
        render_key=render_key,
    )
    # Cheap checks first so a bad call never takes the write lock.
    check_one_of(choice, CHOICES, 'choice', VoteError)
    check_text(inspector, 'inspector', VoteError)
    check_one_of(source, SOURCES, 'source', VoteError)
    with self.transaction() as conn:
      return insert_row(conn, 'votes', check_vote_row(conn, row))

  def record_votes(self, votes: Sequence[dict]) -> list[int]:
    """Append many answers in ONE transaction (all or none); their event ids.

    For machine-made votes (the simulated inspector's thousands of answers),
    where one fsync per vote would dominate. Each dict has record_vote's
    arguments; every vote is validated as record_vote validates it, and a bad
    one aborts the whole batch with its index in the message.
    """
    now = time.time()
    rows = []
    for i, v in enumerate(votes):
      unknown = set(v) - _VOTE_ARGS
      if unknown:
        raise VoteError(f'vote {i}: unknown fields {sorted(unknown)}')
      row = dict(
          kind='vote',
          undoes_event_id=None,
          source='human',
          session=None,
          shown_at=None,
          answered_at=None,
          created=now,
          view_azimuth=None,
          render_key=None,
      )
      row.update(v)
      try:
        check_one_of(row.get('choice'), CHOICES, 'choice', VoteError)
        check_text(row.get('inspector'), 'inspector', VoteError)
        check_one_of(row['source'], SOURCES, 'source', VoteError)
      except VoteError as e:
        raise VoteError(f'vote {i}: {e}') from e
      rows.append(row)
    with self.transaction() as conn:
      ids = []
      for i, row in enumerate(rows):
        try:
          ids.append(insert_row(conn, 'votes', check_vote_row(conn, row)))
        except VoteError as e:
          raise VoteError(f'vote {i}: {e}') from e
      return ids

  def record_undo(self, inspector: str, session: Optional[str] = None) -> int:
    """Withdraw the inspector's latest not-yet-undone vote (skips included;
    only votes of ``session`` when it is given); the undo's event id."""
    check_text(inspector, 'inspector', VoteError)
    check_optional_text(session, 'session', VoteError)
    where = 'v.kind = ? AND v.inspector = ?'
    params = ['vote', inspector]
    if session is not None:
      where += ' AND v.session = ?'
      params.append(session)
    with self.transaction() as conn:
      target = conn.execute(
          f'SELECT {", ".join(VOTE_COLUMNS)} FROM votes v WHERE {where} AND '
          'NOT EXISTS (SELECT 1 FROM votes u WHERE u.undoes_event_id = '
          'v.event_id) ORDER BY v.event_id DESC LIMIT 1',
          params,
      ).fetchone()
      if target is None:
        scope = '' if session is None else f' in session {session!r}'
        raise VoteError(f'inspector {inspector!r} has no vote to undo{scope}')
      target = VoteEvent(*target)
      row = target._asdict()
      del row['event_id']
      row.update(
          kind='undo',
          choice=None,
          undoes_event_id=target.event_id,
          session=session,
          shown_at=None,
          answered_at=None,
          created=time.time(),
          view_azimuth=None,
          render_key=None,
      )
      return insert_row(conn, 'votes', check_vote_row(conn, row))

  def current_answer(
      self, inspector: str, scene_id: str, pair_id: int
  ) -> Optional[VoteEvent]:
    """The inspector's latest not-undone answer (skips included) to a pair,
    or None. The preference UI allows one at a time: to change an answer,
    undo it first."""
    row = self.conn.execute(
        f'SELECT {", ".join("v." + c for c in VOTE_COLUMNS)} FROM votes v '
        "WHERE v.kind = 'vote' AND v.inspector = ? AND v.scene_id = ? AND "
        'v.pair_id = ? AND NOT EXISTS (SELECT 1 FROM votes u WHERE '
        'u.undoes_event_id = v.event_id) ORDER BY v.event_id DESC LIMIT 1',
        (inspector, scene_id, pair_id),
    ).fetchone()
    return None if row is None else VoteEvent(*row)

  def event(self, event_id: int) -> VoteEvent:
    """One vote-log row (e.g. which vote an undo withdrew)."""
    row = self.conn.execute(
        f'SELECT {", ".join(VOTE_COLUMNS)} FROM votes WHERE event_id = ?',
        (event_id,),
    ).fetchone()
    if row is None:
      raise VoteError(f'unknown vote event {event_id}')
    return VoteEvent(*row)

  def _votes(
      self, scene_id=None, inspector=None, source=None, include_skips=False
  ) -> list[VoteEvent]:
    """Vote events no undo targets, oldest first, optionally filtered."""
    where = [
        "v.kind = 'vote'",
        'NOT EXISTS (SELECT 1 FROM votes u WHERE '
        'u.undoes_event_id = v.event_id)',
    ]
    params = []
    if not include_skips:
      where.append("v.choice != 'skip'")
    for col, value in (
        ('scene_id', scene_id),
        ('inspector', inspector),
        ('source', source),
    ):
      if value is not None:
        where.append(f'v.{col} = ?')
        params.append(value)
    rows = self.conn.execute(
        f'SELECT {", ".join("v." + c for c in VOTE_COLUMNS)} FROM votes v '
        f'WHERE {" AND ".join(where)} ORDER BY v.event_id',
        params,
    ).fetchall()
    return [VoteEvent(*r) for r in rows]

  def effective_votes(
      self,
      scene_id: Optional[str] = None,
      inspector: Optional[str] = None,
      source: Optional[str] = None,
      latest_only: bool = False,
  ) -> list[VoteEvent]:
    """Votes minus undone ones minus skips, oldest first. Repeated votes of
    an inspector on a pair all count, unless ``latest_only``."""
    if source is not None:
      check_one_of(source, SOURCES, 'source', VoteError)
    votes = self._votes(scene_id, inspector, source)
    if not latest_only:
      return votes
    latest = {(v.inspector, v.scene_id, v.pair_id): v for v in votes}
    return sorted(latest.values(), key=lambda v: v.event_id)

  def vote_counts(self, scene_id: Optional[str] = None) -> dict:
    """Totals: 'events' (log rows), 'votes' (vote events), 'undone' (votes
    withdrawn by an undo), and of the rest 'skip', 'left', 'right', 'equal',
    'both_bad' and 'effective' (left + right + equal + both_bad)."""
    where, params = ('', ())
    if scene_id is not None:
      where, params = 'WHERE scene_id = ?', (scene_id,)
    events, votes, undos = self.conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE kind = 'vote'), "
        f"count(*) FILTER (WHERE kind = 'undo') FROM votes {where}",
        params,
    ).fetchone()
    counts = dict(events=events, votes=votes, undone=undos)
    counts.update(dict.fromkeys(CHOICES, 0))
    and_scene = '' if scene_id is None else 'AND v.scene_id = ?'
    counts.update(
        self.conn.execute(
            f"SELECT v.choice, count(*) FROM votes v WHERE v.kind = 'vote' "
            f'{and_scene} AND NOT EXISTS (SELECT 1 FROM votes u WHERE '
            f'u.undoes_event_id = v.event_id) GROUP BY v.choice',
            params,
        )
    )
    counts['effective'] = (
        counts['left'] + counts['right'] + counts['equal'] + counts['both_bad']
    )
    return counts

  def judged_pairs(
      self, inspector: str, include_skips: bool = True
  ) -> set[tuple[str, int]]:
    """{(scene_id, pair_id)} the inspector has answered and not undone;
    skipped pairs count by default, so a UI does not show them again."""
    check_text(inspector, 'inspector', VoteError)
    return {
        (v.scene_id, v.pair_id)
        for v in self._votes(inspector=inspector, include_skips=include_skips)
    }

  def training_examples(
      self,
      scene_id: Optional[str] = None,
      source: Optional[str] = None,
      inspector: Optional[str] = None,
      latest_only: bool = False,
      both_bad: str = 'tie',
  ) -> list[Example]:
    """(scene_id, left_action, right_action, target) per effective vote:
    target 1.0 left preferred, 0.0 right preferred, 0.5 equal. A 'both_bad'
    answer is a tie (0.5) with both_bad='tie', and left out with 'drop'."""
    check_one_of(both_bad, BOTH_BAD_RULES, 'both_bad', VoteError)
    return [
        Example(v.scene_id, v.left_action, v.right_action, TARGETS[v.choice])
        for v in self.effective_votes(scene_id, inspector, source, latest_only)
        if not (v.choice == 'both_bad' and both_bad == 'drop')
    ]
