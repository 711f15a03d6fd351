"""Checks on the values the preference store is given (see ``store``).

Every value is checked in Python before it is written, each refusal a
``StoreError`` (or the subclass the caller names) that names the field; the
table constraints and triggers of ``store_schema`` stay the last line of
defence.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from rlhf_tf.preferences.store_schema import (
    ActionError,
    CHOICES,
    SOURCES,
    StoreError,
    VoteError,
)


def check_text(value, what: str, error=StoreError) -> str:
  """A non-empty string, or ``error`` naming ``what``."""
  if not isinstance(value, str) or not value.strip():
    raise error(f'{what} must be a non-empty string; got {value!r}')
  return value


def check_optional_text(value, what: str, error=StoreError):
  if value is not None and not isinstance(value, str):
    raise error(f'{what} must be a string or None; got {value!r}')
  return value


def check_int(value, what: str, error=StoreError) -> int:
  """An integer (numpy ones too); bools are refused, True is not an id."""
  if (
      isinstance(value, bool)
      or not isinstance(value, int)
      and not (
          hasattr(value, 'dtype') and getattr(value.dtype, 'kind', '') in 'iu'
      )
  ):
    raise error(f'{what} must be an integer; got {value!r}')
  return int(value)


def check_one_of(value, allowed, what: str, error=StoreError) -> str:
  if not isinstance(value, str) or value not in allowed:
    raise error(f'{what} must be one of {", ".join(allowed)}; got {value!r}')
  return value


def check_time(value, what: str, error=StoreError):
  """None or finite unix seconds (float)."""
  if value is None:
    return None
  try:
    if isinstance(value, (bool, str, bytes)):
      raise TypeError
    value = float(value)
  except (TypeError, ValueError):
    raise error(f'{what} must be unix seconds or None; got {value!r}') from None
  if value != value or value in (float('inf'), float('-inf')):
    raise error(f'{what} must be finite; got {value}')
  return value


def check_degrees(value, what: str, error=VoteError):
  """None or a finite angle in degrees (float)."""
  if value is None:
    return None
  if isinstance(value, (bool, str, bytes)) or not isinstance(
      value, (int, float, np.integer, np.floating)
  ):
    raise error(f'{what} must be degrees (a number) or None; got {value!r}')
  if not np.isfinite(value):
    raise error(f'{what} must be finite; got {value}')
  return float(value)


def check_vertices(vertices, what: str = 'vertices') -> list:
  """[[x, y], ...]: at least 3 finite vertices in JH coordinates [0, 1]^2."""
  try:
    arr = np.asarray(vertices, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ActionError(f'{what} must be a list of [x, y] ({e})') from e
  if arr.ndim != 2 or arr.shape[0] < 3 or arr.shape[1] != 2:
    raise ActionError(
        f'{what} must have shape [n >= 3, 2]; got shape ' f'{arr.shape}'
    )
  if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
    raise ActionError(
        f'{what} must be finite JH coordinates in [0, 1]; got '
        f'{arr.tolist()}'
    )
  return arr.tolist()


def dumps(obj, what: str, error=StoreError):
  """Canonical JSON text (sorted keys): equal objects give equal text."""
  if obj is None:
    return None
  try:
    return json.dumps(
        obj, sort_keys=True, separators=(',', ':'), allow_nan=False
    )
  except (TypeError, ValueError) as e:
    raise error(f'{what} is not JSON-serialisable: {e}') from e


def insert_row(conn: sqlite3.Connection, table: str, row: dict) -> int:
  """INSERT one {column: value} row; its rowid."""
  cur = conn.execute(
      f'INSERT INTO {table} ({", ".join(row)}) '
      f'VALUES ({", ".join("?" * len(row))})',
      tuple(row.values()),
  )
  return cur.lastrowid


def check_vote_row(conn: sqlite3.Connection, row: dict) -> dict:
  """Validate a vote-log row (either kind) against the stored pairs and
  votes; returns it with ids as int and times as float."""
  check_one_of(row['kind'], ('vote', 'undo'), 'kind', VoteError)
  check_text(row['inspector'], 'inspector', VoteError)
  check_one_of(row['source'], SOURCES, 'source', VoteError)
  check_optional_text(row['session'], 'session', VoteError)
  check_text(row['scene_id'], 'scene_id', VoteError)
  for key in ('pair_id', 'left_action', 'right_action'):
    row[key] = check_int(row[key], key, VoteError)
  for key in ('shown_at', 'answered_at', 'created'):
    row[key] = check_time(row[key], key, VoteError)
  row['view_azimuth'] = check_degrees(row.get('view_azimuth'), 'view_azimuth')
  row['render_key'] = row.get('render_key')
  if row['render_key'] is not None:
    check_text(row['render_key'], 'render_key', VoteError)
  if row['kind'] == 'vote':
    check_one_of(row['choice'], CHOICES, 'choice', VoteError)
  else:
    _check_undo_target(conn, row)
  scene, pair_id = row['scene_id'], row['pair_id']
  shown = (row['left_action'], row['right_action'])
  got = conn.execute(
      'SELECT action_a, action_b FROM pairs WHERE scene_id = ? '
      'AND pair_id = ?',
      (scene, pair_id),
  ).fetchone()
  if got is None:
    if (
        conn.execute(
            'SELECT 1 FROM scenes WHERE scene_id = ?', (scene,)
        ).fetchone()
        is None
    ):
      raise VoteError(f'unknown scene {scene!r}')
    raise VoteError(f'unknown pair {pair_id} in scene {scene!r}')
  if tuple(sorted(shown)) != tuple(got):
    raise VoteError(
        f'shown actions {shown} do not match pair {pair_id} in '
        f'scene {scene!r}, which compares actions {tuple(got)}'
    )
  return row


def _check_undo_target(conn: sqlite3.Connection, row: dict):
  """An undo withdraws a not-yet-undone vote of the same inspector on the
  same scene and pair."""
  target = row['undoes_event_id'] = check_int(
      row['undoes_event_id'], 'undoes_event_id', VoteError
  )
  got = conn.execute(
      'SELECT kind, inspector, scene_id, pair_id FROM votes '
      'WHERE event_id = ?',
      (target,),
  ).fetchone()
  wanted = ('vote', row['inspector'], row['scene_id'], row['pair_id'])
  if got is None or tuple(got) != wanted:
    raise VoteError(
        f'undo targets event {target}, which is not a vote by '
        f'inspector {row["inspector"]!r} on pair '
        f'{row["pair_id"]} of scene {row["scene_id"]!r}'
    )
  if conn.execute(
      'SELECT 1 FROM votes WHERE undoes_event_id = ?', (target,)
  ).fetchone():
    raise VoteError(f'vote event {target} is already undone')
