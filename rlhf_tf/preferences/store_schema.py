"""Schema, errors and opening (with migration) of the preference store
(see ``store``).

The Python checks of ``store_checks`` give the clear error messages; the
table constraints and triggers here are the last line of defence (direct
SQL, imports) and keep the vote log append-only.
"""

from __future__ import annotations

from pathlib import Path
import sqlite3

from rlhf_tf.input_error import InputError

# Version 2 adds the choice 'both_bad'; version 3 records the view a vote was
# cast at (votes.view_azimuth, votes.render_key). Older stores are migrated
# when opened (see _migrate), every row kept.
SCHEMA_VERSION = 3
# Vote columns added in version 3; older rows and exports have them NULL.
VIEW_COLUMNS = ('view_azimuth', 'render_key')
BUSY_TIMEOUT_S = 30.0
# An inspector's answers: one side better, 'equal' (about the same), or
# 'both_bad' (neither is acceptable: a tie of two failures, stored apart from
# 'equal' so training and analyses can tell them apart), or 'skip'.
CHOICES = ('left', 'right', 'equal', 'both_bad', 'skip')
SOURCES = ('human', 'simulated')
PROVENANCES = ('random', 'expert', 'augmented', 'learned', 'user')

# Primary-key columns and all columns of each table, in export order.
TABLES = {
    'scene': (
        'scenes',
        ('scene_id',),
        ('scene_id', 'description', 'volume_source', 'jh_meta', 'created'),
    ),
    'action': (
        'actions',
        ('scene_id', 'action_id'),
        (
            'scene_id',
            'action_id',
            'vertices',
            'provenance',
            'parent_action_id',
            'created',
        ),
    ),
    'pair': (
        'pairs',
        ('scene_id', 'pair_id'),
        ('scene_id', 'pair_id', 'action_a', 'action_b', 'created'),
    ),
    'render': (
        'renders',
        ('scene_id', 'action_id', 'render_key'),
        (
            'scene_id',
            'action_id',
            'render_key',
            'png_sha256',
            'path',
            'created',
        ),
    ),
    'vote': (
        'votes',
        ('event_id',),
        (
            'event_id',
            'kind',
            'scene_id',
            'pair_id',
            'left_action',
            'right_action',
            'choice',
            'undoes_event_id',
            'inspector',
            'source',
            'session',
            'shown_at',
            'answered_at',
            'created',
            'view_azimuth',
            'render_key',
        ),
    ),
}
JSON_COLUMNS = ('volume_source', 'jh_meta', 'vertices')

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS scenes (
  scene_id TEXT PRIMARY KEY CHECK (length(scene_id) > 0),
  description TEXT NOT NULL DEFAULT '',
  volume_source TEXT CHECK (volume_source IS NULL OR json_valid(volume_source)),
  jh_meta TEXT CHECK (jh_meta IS NULL OR json_valid(jh_meta)),
  created REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS actions (
  scene_id TEXT NOT NULL REFERENCES scenes (scene_id),
  action_id INTEGER NOT NULL CHECK (action_id >= 0),
  vertices TEXT NOT NULL CHECK (json_valid(vertices)),
  provenance TEXT NOT NULL CHECK (provenance IN
    ('random', 'expert', 'augmented', 'learned', 'user')),
  parent_action_id INTEGER,
  created REAL NOT NULL,
  PRIMARY KEY (scene_id, action_id),
  FOREIGN KEY (scene_id, parent_action_id)
    REFERENCES actions (scene_id, action_id)
) STRICT;
CREATE TABLE IF NOT EXISTS pairs (
  scene_id TEXT NOT NULL,
  pair_id INTEGER NOT NULL CHECK (pair_id >= 0),
  action_a INTEGER NOT NULL,
  action_b INTEGER NOT NULL,
  created REAL NOT NULL,
  PRIMARY KEY (scene_id, pair_id),
  UNIQUE (scene_id, action_a, action_b),
  CHECK (action_a < action_b),
  FOREIGN KEY (scene_id, action_a) REFERENCES actions (scene_id, action_id),
  FOREIGN KEY (scene_id, action_b) REFERENCES actions (scene_id, action_id)
) STRICT;
CREATE TABLE IF NOT EXISTS renders (
  scene_id TEXT NOT NULL,
  action_id INTEGER NOT NULL,
  render_key TEXT NOT NULL CHECK (length(render_key) > 0),
  png_sha256 TEXT NOT NULL CHECK (length(png_sha256) = 64),
  path TEXT NOT NULL,
  created REAL NOT NULL,
  PRIMARY KEY (scene_id, action_id, render_key),
  FOREIGN KEY (scene_id, action_id) REFERENCES actions (scene_id, action_id)
) STRICT;
CREATE TABLE IF NOT EXISTS votes (
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
  view_azimuth REAL,
  render_key TEXT CHECK (render_key IS NULL OR length(render_key) > 0),
  CHECK ((kind = 'vote' AND choice IS NOT NULL AND undoes_event_id IS NULL)
      OR (kind = 'undo' AND choice IS NULL AND undoes_event_id IS NOT NULL)),
  FOREIGN KEY (scene_id, pair_id) REFERENCES pairs (scene_id, pair_id)
) STRICT;
CREATE INDEX IF NOT EXISTS votes_by_inspector ON votes (inspector, event_id);
CREATE INDEX IF NOT EXISTS votes_by_pair ON votes (scene_id, pair_id);
CREATE TRIGGER IF NOT EXISTS votes_no_update BEFORE UPDATE ON votes BEGIN
  SELECT RAISE(ABORT, 'votes is append-only: rows cannot be updated');
END;
CREATE TRIGGER IF NOT EXISTS votes_no_delete BEFORE DELETE ON votes BEGIN
  SELECT RAISE(ABORT, 'votes is append-only: record an undo instead');
END;
CREATE TRIGGER IF NOT EXISTS votes_match_pair BEFORE INSERT ON votes BEGIN
  SELECT RAISE(ABORT, 'vote actions do not match the pair') WHERE NOT EXISTS (
    SELECT 1 FROM pairs p WHERE p.scene_id = NEW.scene_id
      AND p.pair_id = NEW.pair_id
      AND p.action_a = min(NEW.left_action, NEW.right_action)
      AND p.action_b = max(NEW.left_action, NEW.right_action));
END;
CREATE TRIGGER IF NOT EXISTS votes_undo_target BEFORE INSERT ON votes
WHEN NEW.kind = 'undo' BEGIN
  SELECT RAISE(ABORT, 'an undo must target a vote of the same inspector')
  WHERE NOT EXISTS (
    SELECT 1 FROM votes v WHERE v.event_id = NEW.undoes_event_id
      AND v.kind = 'vote' AND v.inspector = NEW.inspector);
END;
"""


class StoreError(InputError):
  """Anything the store refuses; nothing is written when it is raised."""


class SchemaError(StoreError):
  """The file is not a preference store of this schema version."""


class SceneError(StoreError):
  pass


class ActionError(StoreError):
  pass


class PairError(StoreError):
  pass


class VoteError(StoreError):
  pass


class ImageError(StoreError):
  pass


class ImportConflictError(StoreError):
  """An imported row clashes with a stored one (or is malformed)."""


# ---------------------------------------------------------------- opening


def open_connection(path: Path) -> sqlite3.Connection:
  """Connect, check the file is ours before changing anything, set it up."""
  conn = sqlite3.connect(
      str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None
  )  # the store issues BEGIN
  try:
    conn.execute(f'PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}')
    version = conn.execute('PRAGMA user_version').fetchone()[0]
    n_tables = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchone()[0]
  except sqlite3.DatabaseError as e:
    conn.close()
    raise SchemaError(
        f'{path} is not a SQLite database ({e}); left ' f'untouched'
    ) from e
  problem = None
  if version == 0 and n_tables:
    problem = 'is a SQLite database but not a preference store'
  elif version not in (0, 1, 2, SCHEMA_VERSION):
    problem = (
        f'has schema version {version}, this code reads version '
        f'{SCHEMA_VERSION} (no migration available)'
    )
  if problem:
    conn.close()
    raise SchemaError(f'{path} {problem}; left untouched')
  conn.execute('PRAGMA foreign_keys = ON')
  mode = conn.execute('PRAGMA journal_mode = WAL').fetchone()[0]
  if mode.lower() != 'wal':
    conn.close()
    raise SchemaError(f'{path}: cannot enable WAL (journal_mode is {mode})')
  conn.execute('PRAGMA synchronous = FULL')
  if version == 0:
    # IF NOT EXISTS throughout: when two processes create the store at once,
    # the second finds the tables and only sets the version again.
    try:
      conn.executescript(
          f'BEGIN IMMEDIATE; {SCHEMA_SQL} '
          f'PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;'
      )
    except sqlite3.Error:
      if conn.in_transaction:
        conn.execute('ROLLBACK')
      conn.close()
      raise
  elif version in (1, 2):
    try:
      _migrate(conn)
    except sqlite3.Error as e:
      conn.close()
      raise SchemaError(
          f'{path}: migrating schema version {version} to '
          f'{SCHEMA_VERSION} failed ({e}); nothing was changed'
      ) from e
  return conn


def _sql_statements(script: str) -> list:
  """The statements of an SQL script (trigger bodies kept whole)."""
  out, buf = [], ''
  for line in script.splitlines(keepends=True):
    buf += line
    if sqlite3.complete_statement(buf):
      out.append(buf.strip())
      buf = ''
  return out


def _migrate(conn: sqlite3.Connection) -> None:
  """Version 1 or 2 -> SCHEMA_VERSION in ONE transaction (all or nothing).
  Another process that migrated first leaves nothing to do."""
  conn.execute('PRAGMA foreign_keys = OFF')  # a no-op inside a transaction
  try:
    conn.execute('BEGIN IMMEDIATE')
    try:
      found = conn.execute('PRAGMA user_version').fetchone()[0]
      if found == 1:
        _rebuild_votes_from_v1(conn)
      elif found == 2:
        _add_view_columns(conn)
      if found in (1, 2):
        broken = conn.execute('PRAGMA foreign_key_check').fetchall()
        if broken:
          raise sqlite3.IntegrityError(f'foreign keys broken: {broken[:3]}')
        conn.execute(f'PRAGMA user_version = {SCHEMA_VERSION}')
      conn.execute('COMMIT')
    except BaseException:
      if conn.in_transaction:
        conn.execute('ROLLBACK')
      raise
  finally:
    conn.execute('PRAGMA foreign_keys = ON')


def _rebuild_votes_from_v1(conn: sqlite3.Connection) -> None:
  """Version 1 -> current: the votes table gets the 'both_bad' choice (and
  version 3's view columns, NULL for every old vote). SQLite cannot change a
  CHECK constraint, so the table is rebuilt as
  sqlite.org/lang_altertable.html (section 7) describes: a new table, every
  row copied (event ids kept), the old one dropped, the new renamed, its
  indexes and triggers made again; the caller checks the foreign keys."""
  votes_sql = _sql_statements(
      SCHEMA_SQL[SCHEMA_SQL.index('CREATE TABLE IF NOT EXISTS votes (') :]
  )
  cols = ', '.join(c for c in TABLES['vote'][2] if c not in VIEW_COLUMNS)
  conn.execute(votes_sql[0].replace('EXISTS votes (', 'EXISTS votes_new (', 1))
  conn.execute(f'INSERT INTO votes_new ({cols}) SELECT {cols} FROM votes')
  conn.execute('DROP TABLE votes')
  conn.execute('ALTER TABLE votes_new RENAME TO votes')
  for statement in votes_sql[1:]:
    conn.execute(statement)


def _add_view_columns(conn: sqlite3.Connection) -> None:
  """Version 2 -> 3: the votes table gains the nullable view columns (NULL:
  the view was not recorded, as for every vote before version 3). ADD
  COLUMN keeps every row and its event id, and fires no trigger."""
  conn.execute('ALTER TABLE votes ADD COLUMN view_azimuth REAL')
  conn.execute(
      'ALTER TABLE votes ADD COLUMN render_key TEXT CHECK '
      '(render_key IS NULL OR length(render_key) > 0)'
  )
