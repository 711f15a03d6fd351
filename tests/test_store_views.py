"""The view a vote was cast at (schema version 3): recorded, validated,
exported and imported; version-2 stores and exports (no view) still load."""

import json
import math
import sqlite3

import pytest
from test_store import _fill, SCENE

from rlhf_tf.preferences import store_schema
from rlhf_tf.preferences.store import PreferenceStore, VoteError

KEY = 'vol-16px-az30-el10-zoom1.3-step0-tau0.01-a0.5-shade1'

# The votes table of schema version 2, verbatim (no view columns).
V2_VOTES = """CREATE TABLE votes (
  event_id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('vote', 'undo')),
  scene_id TEXT NOT NULL,
  pair_id INTEGER NOT NULL,
  left_action INTEGER NOT NULL,
  right_action INTEGER NOT NULL,
  choice TEXT CHECK (choice IN ('left', 'right', 'equal', 'both_bad',
                                 'skip')),
  undoes_event_id INTEGER UNIQUE REFERENCES votes (event_id),
  inspector TEXT NOT NULL CHECK (length(inspector) > 0),
  source TEXT NOT NULL CHECK (source IN ('human', 'simulated')),
  session TEXT,
  shown_at REAL,
  answered_at REAL,
  created REAL NOT NULL,
  CHECK ((kind = 'vote' AND choice IS NOT NULL AND undoes_event_id IS NULL)
      OR (kind = 'undo' AND choice IS NULL AND undoes_event_id IS NOT NULL)),
  FOREIGN KEY (scene_id, pair_id) REFERENCES pairs (scene_id, pair_id)
) STRICT"""
V2_COLUMNS = [
    c
    for c in store_schema.TABLES['vote'][2]
    if c not in store_schema.VIEW_COLUMNS
]


def _make_v2_store(path):
  """A version-2 store as version-2 code left it: votes of every kind
  (without a view), an undo; returns (pairs, the vote rows)."""
  with PreferenceStore(path) as s:
    pairs = _fill(s)
    for i, (a, b) in enumerate([(0, 1), (2, 3), (1, 4), (0, 5), (3, 5)]):
      s.record_vote(
          SCENE,
          pairs[(a, b)],
          b,
          a,
          ('left', 'right', 'equal', 'both_bad', 'skip')[i],
          'inspector-1',
          session=f'vote-{i}',
          shown_at=100.0 + i,
          answered_at=103.0 + i,
      )
    s.record_undo('inspector-1')
  conn = sqlite3.connect(path, isolation_level=None)
  extras = store_schema._sql_statements(
      store_schema.SCHEMA_SQL[
          store_schema.SCHEMA_SQL.index('CREATE INDEX IF NOT EXISTS votes_by') :
      ]
  )
  conn.execute('PRAGMA foreign_keys = OFF')
  conn.execute('BEGIN')
  conn.execute('ALTER TABLE votes RENAME TO votes_old')
  conn.execute(V2_VOTES)
  cols = ', '.join(V2_COLUMNS)
  conn.execute(f'INSERT INTO votes SELECT {cols} FROM votes_old')
  conn.execute('DROP TABLE votes_old')
  for statement in extras:
    conn.execute(statement)
  conn.execute('PRAGMA user_version = 2')
  conn.execute('COMMIT')
  rows = conn.execute(f'SELECT {cols} FROM votes ORDER BY event_id').fetchall()
  assert 'view_azimuth' not in {
      r[1] for r in conn.execute('PRAGMA table_info(votes)')
  }
  conn.close()
  return pairs, rows


def test_version_2_store_migrates_keeping_every_vote(tmp_path):
  path = tmp_path / 'v2.sqlite'
  pairs, before = _make_v2_store(path)
  with PreferenceStore(path) as s:
    conn = s.conn
    assert conn.execute('PRAGMA user_version').fetchone()[0] == 3
    got = conn.execute(
        'SELECT * FROM votes ORDER BY event_id'
    ).fetchall()  # every old row, its ids and times, and no view
    assert [r[: len(V2_COLUMNS)] for r in got] == before
    assert all(r[len(V2_COLUMNS) :] == (None, None) for r in got)
    assert [c[1] for c in conn.execute('PRAGMA table_info(votes)')] == list(
        store_schema.TABLES['vote'][2]
    )
    # Old votes are still effective votes and training examples.
    assert [v.choice for v in s.effective_votes()] == [
        'left',
        'right',
        'equal',
        'both_bad',
    ]
    assert all(v.view_azimuth is None for v in s.effective_votes())
    assert len(s.training_examples()) == 4
    # New votes carry their view; the log stays append-only and checked.
    new = s.record_vote(
        SCENE,
        pairs[(1, 2)],
        2,
        1,
        'left',
        'inspector-2',
        view_azimuth=30.0,
        render_key=KEY,
    )
    assert s.event(new).view_azimuth == 30.0
    assert s.event(new).render_key == KEY
    with pytest.raises(sqlite3.IntegrityError, match='append-only'):
      conn.execute('UPDATE votes SET view_azimuth = 0')
    with pytest.raises(sqlite3.IntegrityError, match='CHECK'):
      conn.execute(
          'INSERT INTO votes (kind, scene_id, pair_id, left_action, '
          'right_action, choice, inspector, source, created, render_key) '
          "VALUES ('vote', ?, ?, 2, 1, 'left', 'x', 'human', 0, '')",
          (SCENE, pairs[(1, 2)]),
      )
    names = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE tbl_name = 'votes'"
        )
    }
    assert {
        'votes_by_inspector',
        'votes_by_pair',
        'votes_no_update',
        'votes_no_delete',
        'votes_match_pair',
        'votes_undo_target',
    } <= names
  with PreferenceStore(path) as s:  # opening again changes nothing
    assert len(s.conn.execute('SELECT * FROM votes').fetchall()) == 7


def test_failed_migration_changes_nothing(tmp_path):
  """A version-2 store whose migration fails (a column of that name is in
  the way) is left exactly as it was: one transaction."""
  path = tmp_path / 'v2.sqlite'
  _, before = _make_v2_store(path)
  conn = sqlite3.connect(path, isolation_level=None)
  conn.execute('ALTER TABLE votes ADD COLUMN render_key TEXT')
  conn.close()
  with pytest.raises(store_schema.SchemaError, match='version 2 to 3 failed'):
    PreferenceStore(path)
  conn = sqlite3.connect(path)
  assert conn.execute('PRAGMA user_version').fetchone()[0] == 2
  cols = [c[1] for c in conn.execute('PRAGMA table_info(votes)')]
  assert 'view_azimuth' not in cols
  rows = conn.execute(
      f'SELECT {", ".join(V2_COLUMNS)} FROM votes ORDER BY event_id'
  ).fetchall()
  assert rows == before
  conn.close()


def test_view_is_validated_exported_and_imported(tmp_path):
  with PreferenceStore(tmp_path / 'a.sqlite') as s:
    pairs = _fill(s)
    for bad in (float('nan'), math.inf, '30', True):
      with pytest.raises(VoteError, match='view_azimuth'):
        s.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'left', 'i', view_azimuth=bad)
    with pytest.raises(VoteError, match='render_key'):
      s.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'left', 'i', render_key=' ')
    assert s.vote_counts()['events'] == 0  # nothing was written
    s.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'left', 'i', view_azimuth=-60)
    s.record_votes(
        [
            dict(
                scene_id=SCENE,
                pair_id=pairs[(2, 3)],
                left_action=3,
                right_action=2,
                choice='equal',
                inspector='sim',
                source='simulated',
                view_azimuth=90.0,
                render_key=KEY,
            )
        ]
    )
    s.record_vote(SCENE, pairs[(1, 4)], 1, 4, 'right', 'i')  # no view
    undo = s.record_undo('i')
    assert s.event(undo).view_azimuth is None  # an undo is cast at no view
    s.export_jsonl(tmp_path / 'v.jsonl')
  lines = [json.loads(x) for x in open(tmp_path / 'v.jsonl')]
  assert lines[0]['schema_version'] == 3
  votes = [x for x in lines if x['type'] == 'vote']
  assert [(v['view_azimuth'], v['render_key']) for v in votes] == [
      (-60.0, None),
      (90.0, KEY),
      (None, None),
      (None, None),
  ]
  with PreferenceStore(tmp_path / 'b.sqlite') as t:
    assert t.import_jsonl(tmp_path / 'v.jsonl')['vote'] == 4
    assert [v.view_azimuth for v in t.effective_votes()] == [-60.0, 90.0]
    assert t.import_jsonl(tmp_path / 'v.jsonl')['skipped'] == len(lines) - 1
  # A version-2 export (no view fields) imports with no view.
  lines[0]['schema_version'] = 2
  for v in votes:
    del v['view_azimuth'], v['render_key']
  (tmp_path / 'v2.jsonl').write_text(
      ''.join(json.dumps(x) + '\n' for x in lines)
  )
  with PreferenceStore(tmp_path / 'c.sqlite') as u:
    assert u.import_jsonl(tmp_path / 'v2.jsonl')['vote'] == 4
    assert [v.view_azimuth for v in u.effective_votes()] == [None, None]
