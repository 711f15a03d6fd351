"""The durable preference store: scenes, actions, pairs, renders and votes.

One SQLite file (``PreferenceStore(path)``) plus a content-addressed PNG cache
in ``<directory of path>/images/ab/abcdef....png``.

Durability and concurrency
- WAL journal, ``synchronous=FULL`` (a vote is on disk once ``record_vote``
  returns), ``foreign_keys=ON``, a 30 s ``busy_timeout``.
- Every write is one ``BEGIN IMMEDIATE ... COMMIT`` transaction, so several
  processes may write at once (SQLite serialises them) and a writer killed
  mid-transaction leaves nothing behind: its uncommitted rows never reach the
  database and every committed row stays.
- One connection per instance, used only by the process that opened it: open
  a new ``PreferenceStore`` in each worker process.
- ``PRAGMA user_version`` holds the schema version; opening a store with
  another version, or a SQLite file that is not a preference store, raises
  ``SchemaError`` and leaves the file untouched. Opening never truncates.
  Older stores are migrated to version 3 in one transaction when opened,
  every row kept: version 1 (before the 'both_bad' choice) and version 2
  (before votes recorded their view: ``view_azimuth``, ``render_key``, NULL
  for the older votes, which stay valid).

Conventions
- Timestamps (``created``, ``shown_at``, ``answered_at``) are unix seconds
  (float, UTC epoch) -- trivially ordered and subtracted (answer latency).
- Action and pair ids are integers per scene, assigned 0, 1, 2, ... so that
  ``vertices_array(scene)[i]`` is action ``i``.
- Vertices are JH coordinates in [0, 1]^2 (``rlhf_tf.render.histogram``).
- A pair is unordered and stored with ``action_a < action_b``; a vote records
  the order the inspector saw (``left_action``, ``right_action``).

Modules: ``store_schema`` (tables, errors, opening), ``store_checks`` (the
checks on every value written), ``store_votes`` (the append-only vote log,
effective votes, training examples and their split), ``store_io`` (PNG
cache, renders, JSONL export/import). Import everything from here.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
import sqlite3
import time
from typing import NamedTuple, Optional, Sequence

import numpy as np

from rlhf_tf.preferences import store_io
from rlhf_tf.preferences.store_checks import (  # re-exported: the public API
    check_int,
    check_one_of,
    check_text,
    check_vertices,
    dumps,
    insert_row,
)
from rlhf_tf.preferences.store_schema import (  # re-exported: the public API
    ActionError,
    CHOICES,
    ImageError,
    ImportConflictError,
    open_connection,
    PairError,
    PROVENANCES,
    SceneError,
    SCHEMA_VERSION,
    SchemaError,
    SOURCES,
    StoreError,
    VoteError,
)
from rlhf_tf.preferences.store_votes import (  # re-exported: the public API
    BOTH_BAD_RULES,
    Example,
    split_examples,
    TARGETS,
    VoteEvent,
    VoteLog,
)

__all__ = [
    'BOTH_BAD_RULES',
    'CHOICES',
    'PROVENANCES',
    'SCHEMA_VERSION',
    'SOURCES',
    'TARGETS',
    'Action',
    'ActionError',
    'Example',
    'ImageError',
    'ImportConflictError',
    'Pair',
    'PairError',
    'PreferenceStore',
    'SceneError',
    'SchemaError',
    'StoreError',
    'VoteError',
    'VoteEvent',
    'split_examples',
]


class Action(NamedTuple):
  scene_id: str
  action_id: int
  vertices: tuple  # ((x, y), ...) in JH coordinates [0, 1]^2
  provenance: str
  parent_action_id: Optional[int]
  created: float


class Pair(NamedTuple):
  scene_id: str
  pair_id: int
  action_a: int  # action_a < action_b
  action_b: int


class PreferenceStore(VoteLog, store_io.StoreFiles):
  """Scenes, actions, pairs, renders and the append-only vote log."""

  def __init__(self, path):
    self.path = Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.images_dir = self.path.parent / 'images'
    self._pid = os.getpid()
    self._conn = open_connection(self.path)

  # -------------------------------------------------------------- plumbing

  @property
  def conn(self) -> sqlite3.Connection:
    """The connection; refuses use from another process (after a fork)."""
    if self._conn is None:
      raise StoreError(f'store {self.path} is closed')
    if os.getpid() != self._pid:
      raise StoreError(
          f'store {self.path} was opened in process {self._pid}; '
          f'open a new PreferenceStore in process {os.getpid()}'
      )
    return self._conn

  def close(self):
    if self._conn is not None and os.getpid() == self._pid:
      self._conn.close()
    self._conn = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  @contextlib.contextmanager
  def transaction(self):
    """BEGIN IMMEDIATE ... COMMIT; any error rolls everything back."""
    conn = self.conn
    conn.execute('BEGIN IMMEDIATE')
    try:
      yield conn
      conn.execute('COMMIT')
    except sqlite3.IntegrityError as e:
      if conn.in_transaction:
        conn.execute('ROLLBACK')
      raise StoreError(f'rejected by the database: {e}') from e
    except BaseException:
      if conn.in_transaction:
        conn.execute('ROLLBACK')
      raise

  def _require_scene(self, conn, scene_id, error=SceneError):
    if (
        conn.execute(
            'SELECT 1 FROM scenes WHERE scene_id = ?', (scene_id,)
        ).fetchone()
        is None
    ):
      raise error(f'unknown scene {scene_id!r}')

  # -------------------------------------------------------------- scenes

  def add_scene(
      self,
      scene_id: str,
      description: str = '',
      volume_source: Optional[dict] = None,
      jh_meta: Optional[dict] = None,
  ) -> str:
    """Register a scene: its volume source and JH metadata (bins, axes)."""
    check_text(scene_id, 'scene_id', SceneError)
    if not isinstance(description, str):
      raise SceneError(f'description must be a string; got {description!r}')
    for what, obj in (('volume_source', volume_source), ('jh_meta', jh_meta)):
      if obj is not None and not isinstance(obj, dict):
        raise SceneError(f'{what} must be a dict or None; got {obj!r}')
    row = dict(
        scene_id=scene_id,
        description=description,
        volume_source=dumps(volume_source, 'volume_source', SceneError),
        jh_meta=dumps(jh_meta, 'jh_meta', SceneError),
        created=time.time(),
    )
    with self.transaction() as conn:
      if conn.execute(
          'SELECT 1 FROM scenes WHERE scene_id = ?', (scene_id,)
      ).fetchone():
        raise SceneError(f'scene {scene_id!r} already exists')
      insert_row(conn, 'scenes', row)
    return scene_id

  def scenes(self) -> list[dict]:
    rows = self.conn.execute(
        'SELECT scene_id, description, volume_source, jh_meta, created '
        'FROM scenes ORDER BY scene_id'
    ).fetchall()
    return [
        dict(
            scene_id=s,
            description=d,
            volume_source=json.loads(v) if v else None,
            jh_meta=json.loads(j) if j else None,
            created=c,
        )
        for s, d, v, j, c in rows
    ]

  # -------------------------------------------------------------- actions

  def add_actions(
      self,
      scene_id: str,
      vertices_list,
      provenance: str,
      parent_ids: Optional[Sequence[Optional[int]]] = None,
  ) -> list[int]:
    """Append actions (polygons in JH coordinates) to a scene; their ids."""
    check_one_of(provenance, PROVENANCES, 'provenance', ActionError)
    verts = [
        check_vertices(v, f'vertices of action #{i}')
        for i, v in enumerate(vertices_list)
    ]
    parents = [None] * len(verts) if parent_ids is None else list(parent_ids)
    if len(parents) != len(verts):
      raise ActionError(
          f'parent_ids has {len(parents)} entries for ' f'{len(verts)} actions'
      )
    parents = [
        None if p is None else check_int(p, 'parent id', ActionError)
        for p in parents
    ]
    now = time.time()
    with self.transaction() as conn:
      self._require_scene(conn, scene_id, ActionError)
      for p in set(parents) - {None}:
        if not self._action_exists(conn, scene_id, p):
          raise ActionError(f'unknown parent action {p} in scene {scene_id!r}')
      start = conn.execute(
          'SELECT COALESCE(MAX(action_id) + 1, 0) FROM actions '
          'WHERE scene_id = ?',
          (scene_id,),
      ).fetchone()[0]
      ids = list(range(start, start + len(verts)))
      for action_id, v, p in zip(ids, verts, parents):
        insert_row(
            conn,
            'actions',
            dict(
                scene_id=scene_id,
                action_id=action_id,
                vertices=dumps(v, 'vertices'),
                provenance=provenance,
                parent_action_id=p,
                created=now,
            ),
        )
    return ids

  @staticmethod
  def _action_exists(conn, scene_id, action_id) -> bool:
    return (
        conn.execute(
            'SELECT 1 FROM actions WHERE scene_id = ? AND action_id = ?',
            (scene_id, action_id),
        ).fetchone()
        is not None
    )

  def actions(self, scene_id: str) -> list[Action]:
    rows = self.conn.execute(
        'SELECT scene_id, action_id, vertices, provenance, parent_action_id, '
        'created FROM actions WHERE scene_id = ? ORDER BY action_id',
        (scene_id,),
    ).fetchall()
    return [
        Action(s, a, tuple(tuple(xy) for xy in json.loads(v)), p, par, c)
        for s, a, v, p, par, c in rows
    ]

  def vertices_array(
      self, scene_id: str, action_ids: Optional[Sequence[int]] = None
  ) -> np.ndarray:
    """[n, n_vertices, 2] float32 vertices (all actions of the scene by
    default); ActionError for unknown ids or differing vertex counts."""
    by_id = {a.action_id: a.vertices for a in self.actions(scene_id)}
    ids = sorted(by_id) if action_ids is None else [int(i) for i in action_ids]
    missing = [i for i in ids if i not in by_id]
    if missing:
      raise ActionError(f'unknown actions {missing} in scene {scene_id!r}')
    counts = {len(by_id[i]) for i in ids}
    if len(counts) > 1:
      raise ActionError(
          f'actions of scene {scene_id!r} have differing vertex '
          f'counts {sorted(counts)}; cannot stack them'
      )
    return np.asarray([by_id[i] for i in ids], np.float32).reshape(
        len(ids), -1, 2
    )

  # -------------------------------------------------------------- pairs

  def add_pairs(self, scene_id: str, pairs) -> list[int]:
    """Register unordered pairs (a, b) of actions of a scene; their ids."""
    norm = []
    for a, b in pairs:
      a = check_int(a, 'pair action', PairError)
      b = check_int(b, 'pair action', PairError)
      if a == b:
        raise PairError(f'pair ({a}, {b}) compares action {a} with itself')
      key = (min(a, b), max(a, b))
      if key in norm:
        raise PairError(f'pair {key} appears twice in this batch')
      norm.append(key)
    now = time.time()
    with self.transaction() as conn:
      self._require_scene(conn, scene_id, PairError)
      for action_id in sorted({x for ab in norm for x in ab}):
        if not self._action_exists(conn, scene_id, action_id):
          raise PairError(f'unknown action {action_id} in scene {scene_id!r}')
      for a, b in norm:
        existing = self.pair_id(scene_id, a, b)
        if existing is not None:
          raise PairError(
              f'pair ({a}, {b}) already exists in scene '
              f'{scene_id!r} as pair {existing}'
          )
      start = conn.execute(
          'SELECT COALESCE(MAX(pair_id) + 1, 0) FROM pairs WHERE scene_id = ?',
          (scene_id,),
      ).fetchone()[0]
      ids = list(range(start, start + len(norm)))
      for pair_id, (a, b) in zip(ids, norm):
        insert_row(
            conn,
            'pairs',
            dict(
                scene_id=scene_id,
                pair_id=pair_id,
                action_a=a,
                action_b=b,
                created=now,
            ),
        )
    return ids

  def pair_id(self, scene_id: str, a: int, b: int) -> Optional[int]:
    """The id of the unordered pair {a, b} in a scene, or None."""
    row = self.conn.execute(
        'SELECT pair_id FROM pairs WHERE scene_id = ? AND action_a = ? '
        'AND action_b = ?',
        (scene_id, min(a, b), max(a, b)),
    ).fetchone()
    return None if row is None else row[0]

  def pairs(self, scene_id: str) -> list[Pair]:
    rows = self.conn.execute(
        'SELECT scene_id, pair_id, action_a, action_b FROM pairs '
        'WHERE scene_id = ? ORDER BY pair_id',
        (scene_id,),
    ).fetchall()
    return [Pair(*r) for r in rows]
