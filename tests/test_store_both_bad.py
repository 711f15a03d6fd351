"""The 'both bad' answer: stored apart from 'equal', exported and imported
as itself, a tie in training unless dropped; version-1 stores migrate (to
the current version, see test_store_views.py for version 2)."""

import json
import sqlite3

import pytest
from test_store import _fill, SCENE

from rlhf_tf.preferences import store as store_lib
from rlhf_tf.preferences import store_schema
from rlhf_tf.preferences.store import PreferenceStore, VoteError

# The votes table of schema version 1, verbatim.
V1_VOTES = """CREATE TABLE votes (
  event_id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('vote', 'undo')),
  scene_id TEXT NOT NULL,
  pair_id INTEGER NOT NULL,
  left_action INTEGER NOT NULL,
  right_action INTEGER NOT NULL,
  choice TEXT CHECK (choice IN ('left', 'right', 'equal', 'skip')),
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


def test_both_bad_is_its_own_answer_and_a_tie_unless_dropped(tmp_path):
  with PreferenceStore(tmp_path / 'p.sqlite') as s:
    pairs = _fill(s)
    s.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'equal', 'inspector-1')
    bad = s.record_vote(SCENE, pairs[(2, 3)], 3, 2, 'both_bad', 'inspector-1')
    s.record_vote(SCENE, pairs[(1, 4)], 1, 4, 'left', 'inspector-2')
    assert s.event(bad).choice == 'both_bad'
    counts = s.vote_counts()
    assert (counts['equal'], counts['both_bad'], counts['effective']) == (
        1,
        1,
        3,
    )
    assert s.training_examples() == [
        (SCENE, 0, 1, 0.5),
        (SCENE, 3, 2, 0.5),
        (SCENE, 1, 4, 1.0),
    ]
    assert s.training_examples(both_bad='drop') == [
        (SCENE, 0, 1, 0.5),
        (SCENE, 1, 4, 1.0),
    ]
    with pytest.raises(VoteError, match='both_bad'):
      s.training_examples(both_bad='low')
    # Exports keep the two kinds apart, and a fresh store reads them back.
    s.export_jsonl(tmp_path / 'votes.jsonl')
  rows = [json.loads(line) for line in open(tmp_path / 'votes.jsonl')]
  assert sorted(r['choice'] for r in rows if r['type'] == 'vote') == [
      'both_bad',
      'equal',
      'left',
  ]
  with PreferenceStore(tmp_path / 'q.sqlite') as t:
    t.import_jsonl(tmp_path / 'votes.jsonl')
    assert [v.choice for v in t.effective_votes()] == [
        'equal',
        'both_bad',
        'left',
    ]


def _downgrade_to_v1(path):
  """Rebuilds the votes table with version 1's CHECK and sets version 1."""
  conn = sqlite3.connect(path, isolation_level=None)
  extras = store_schema._sql_statements(
      store_schema.SCHEMA_SQL[
          store_schema.SCHEMA_SQL.index('CREATE INDEX IF NOT EXISTS votes_by') :
      ]
  )
  conn.execute('PRAGMA foreign_keys = OFF')
  conn.execute('BEGIN')
  conn.execute('ALTER TABLE votes RENAME TO votes_old')
  conn.execute(V1_VOTES)
  cols = ', '.join(
      c
      for c in store_schema.TABLES['vote'][2]
      if c not in store_schema.VIEW_COLUMNS
  )
  conn.execute(f'INSERT INTO votes SELECT {cols} FROM votes_old')
  conn.execute('DROP TABLE votes_old')
  for statement in extras:
    conn.execute(statement)
  conn.execute('PRAGMA user_version = 1')
  conn.execute('COMMIT')
  with pytest.raises(sqlite3.IntegrityError, match='CHECK'):
    conn.execute(
        'INSERT INTO votes (kind, scene_id, pair_id, left_action, '
        'right_action, choice, inspector, source, created) VALUES '
        "('vote', ?, 0, 0, 1, 'both_bad', 'x', 'human', 0)",
        (SCENE,),
    )
  conn.close()


def test_version_1_store_is_migrated_keeping_every_vote(tmp_path):
  path = tmp_path / 'old.sqlite'
  with PreferenceStore(path) as s:
    pairs = _fill(s)
    for i, (a, b) in enumerate([(0, 1), (2, 3), (1, 4), (0, 5)]):
      s.record_vote(
          SCENE,
          pairs[(a, b)],
          a,
          b,
          ('left', 'right', 'equal', 'skip')[i],
          'inspector-1',
      )
    s.record_undo('inspector-1')
    before = s.conn.execute('SELECT * FROM votes ORDER BY event_id').fetchall()
  _downgrade_to_v1(path)
  with PreferenceStore(path) as s:
    conn = s.conn
    assert conn.execute('PRAGMA user_version').fetchone()[0] == 3
    assert (
        conn.execute('SELECT * FROM votes ORDER BY event_id').fetchall()
        == before
    )
    assert conn.execute('PRAGMA foreign_keys').fetchone()[0] == 1
    new = s.record_vote(SCENE, pairs[(3, 4)], 4, 3, 'both_bad', 'inspector-2')
    assert new > before[-1][0]
    with pytest.raises(sqlite3.IntegrityError, match='append-only'):
      conn.execute("UPDATE votes SET choice = 'left'")
    with pytest.raises(sqlite3.IntegrityError, match='same inspector'):
      conn.execute(
          'INSERT INTO votes (kind, scene_id, pair_id, left_action,'
          ' right_action, undoes_event_id, inspector, source, '
          "created) VALUES ('undo', ?, ?, 4, 3, ?, 'inspector-1',"
          " 'human', 0)",
          (SCENE, pairs[(3, 4)], new),
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
    assert (
        len(s.conn.execute('SELECT * FROM votes').fetchall()) == len(before) + 1
    )


def test_version_1_export_imports_into_the_current_version(tmp_path):
  with PreferenceStore(tmp_path / 'a.sqlite') as s:
    pairs = _fill(s)
    s.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'equal', 'inspector-1')
    s.export_jsonl(tmp_path / 'v.jsonl')
  lines = open(tmp_path / 'v.jsonl').read().splitlines()
  header = json.loads(lines[0])
  assert header['schema_version'] == store_lib.SCHEMA_VERSION == 3
  header['schema_version'] = 1
  (tmp_path / 'v1.jsonl').write_text(
      '\n'.join([json.dumps(header)] + lines[1:]) + '\n'
  )
  with PreferenceStore(tmp_path / 'b.sqlite') as t:
    assert t.import_jsonl(tmp_path / 'v1.jsonl')['vote'] == 1
