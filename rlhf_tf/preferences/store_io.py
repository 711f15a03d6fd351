"""The preference store's files: the PNG cache and the JSONL interchange.

``rlhf_tf.preferences.store`` (the ``PreferenceStore`` API) builds on this
module, and takes its image and JSONL methods from ``StoreFiles``; import the
public names from there.

JSONL interchange (``export_jsonl`` / ``import_jsonl``): one JSON object per
line, each with a ``type``: first a ``header`` (format name, schema version),
then ``scene``, ``action``, ``pair``, ``render`` and ``vote`` lines carrying
every column of their table (JSON columns as nested objects). Undo events are
``vote`` lines with ``kind: 'undo'``. Exports of older schema versions import
(their votes without a recorded view). Ids and timestamps are kept, so an
import into an empty store reproduces the effective votes and training
examples exactly. Images are not in the JSONL (render rows name them by
sha256; copy the ``images/`` directory alongside).

Import is one transaction: a row whose key already exists with identical
content is skipped (re-importing a file is a no-op), one whose key exists
with different content raises ``ImportConflictError`` naming the line, and
then nothing of the file is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
import re
import sqlite3
import tempfile
import time
from typing import Optional

from rlhf_tf.preferences.store_checks import (
    check_int,
    check_one_of,
    check_text,
    check_vertices,
    check_vote_row,
    dumps,
    insert_row,
)
from rlhf_tf.preferences.store_schema import (
    ActionError,
    ImageError,
    ImportConflictError,
    JSON_COLUMNS,
    PROVENANCES,
    SCHEMA_VERSION,
    StoreError,
    TABLES,
    VIEW_COLUMNS,
)

FORMAT = 'rlhf_tf.preferences'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_SHA256 = re.compile(r'^[0-9a-f]{64}$')


# ---------------------------------------------------------------- PNG cache


def image_path(images_dir: Path, sha256: str) -> Path:
  """``<images_dir>/ab/abcdef....png`` for a lowercase hex sha256."""
  if not isinstance(sha256, str) or not _SHA256.match(sha256):
    raise ImageError(f'not a lowercase hex sha256: {sha256!r}')
  return Path(images_dir) / sha256[:2] / f'{sha256}.png'


def put_image(images_dir: Path, png_bytes) -> str:
  """Store PNG bytes under their sha256 (atomically); the sha256."""
  if not isinstance(png_bytes, (bytes, bytearray, memoryview)):
    raise ImageError(f'png_bytes must be bytes; got {type(png_bytes).__name__}')
  data = bytes(png_bytes)
  if not data.startswith(PNG_SIGNATURE):
    raise ImageError(f'not a PNG (first bytes {data[:8]!r})')
  sha = hashlib.sha256(data).hexdigest()
  path = image_path(images_dir, sha)
  if path.exists():  # content-addressed: same name, same bytes
    return sha
  path.parent.mkdir(parents=True, exist_ok=True)
  with _atomic_file(path, 'wb') as f:
    f.write(data)
  return sha


@contextlib.contextmanager
def _atomic_file(path: Path, mode: str):
  """Write a file next to ``path``, fsync it and rename it into place.

  A reader sees either no file (or the old one) or the whole new file, never
  a partial one; a failed write leaves no temp file behind.
  """
  fd, tmp = tempfile.mkstemp(
      dir=path.parent, prefix='.tmp-', suffix=path.suffix
  )
  try:
    with os.fdopen(
        fd, mode, **({} if 'b' in mode else {'encoding': 'utf-8'})
    ) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except FileNotFoundError:
      pass
    raise


# ---------------------------------------------------------------- JSONL


def _to_json_row(kind: str, row: tuple) -> dict:
  cols = TABLES[kind][2]
  out = {'type': kind}
  for col, value in zip(cols, row):
    out[col] = json.loads(value) if col in JSON_COLUMNS and value else value
  return out


def export_jsonl(conn: sqlite3.Connection, path) -> dict:
  """Write every table to ``path`` (atomically, from one consistent
  snapshot); counts of lines per type."""
  path = Path(path)
  counts = {}
  with _atomic_file(path, 'w') as f:
    f.write(
        json.dumps(
            {
                'type': 'header',
                'format': FORMAT,
                'schema_version': SCHEMA_VERSION,
            }
        )
        + '\n'
    )
    conn.execute('BEGIN')  # one read snapshot for all tables
    try:
      for kind, (table, key, cols) in TABLES.items():
        rows = conn.execute(
            f'SELECT {", ".join(cols)} FROM {table} '
            f'ORDER BY {", ".join(key)}'
        )
        counts[kind] = 0
        for row in rows:
          f.write(json.dumps(_to_json_row(kind, row), allow_nan=False) + '\n')
          counts[kind] += 1
    finally:
      conn.execute('COMMIT')
  return counts


def _read_lines(path) -> list:
  """[(line number, dict)] for every non-empty line; checks the header."""
  out = []
  with open(path, encoding='utf-8') as f:
    for n, text in enumerate(f, 1):
      if not text.strip():
        continue
      try:
        obj = json.loads(text)
      except json.JSONDecodeError as e:
        raise ImportConflictError(f'{path} line {n}: not JSON ({e})') from e
      kind = obj.get('type') if isinstance(obj, dict) else None
      if kind == 'header':
        # Older exports are valid now: version 1 lacks 'both_bad', versions
        # 1 and 2 lack the votes' view columns (imported as NULL).
        if obj.get('format') != FORMAT or obj.get('schema_version') not in (
            1,
            2,
            SCHEMA_VERSION,
        ):
          raise ImportConflictError(
              f'{path} line {n}: expected format {FORMAT!r} version '
              f'{SCHEMA_VERSION}; got {obj.get("format")!r} version '
              f'{obj.get("schema_version")!r}'
          )
        continue
      if kind not in TABLES:
        raise ImportConflictError(
            f'{path} line {n}: unknown line type ' f'{kind!r}'
        )
      out.append((n, obj))
  return out


def _db_row(kind: str, obj: dict) -> dict:
  """The table row for a JSONL object (exactly the table's columns)."""
  cols = TABLES[kind][2]
  if kind == 'vote':  # added in version 3: absent from older exports
    obj = dict({c: None for c in VIEW_COLUMNS}, **obj)
  extra = set(obj) - set(cols) - {'type'}
  missing = set(cols) - set(obj)
  if extra or missing:
    raise StoreError(
        f'{kind} line has unexpected fields {sorted(extra)} / '
        f'lacks fields {sorted(missing)}'
    )
  if kind == 'action':  # the canonical float form add_actions stores
    obj = dict(obj, vertices=check_vertices(obj['vertices']))
  return {c: dumps(obj[c], c) if c in JSON_COLUMNS else obj[c] for c in cols}


def _insert_or_match(conn, kind: str, row: dict) -> bool:
  """Insert ``row``; False when an identical row is already there."""
  table, key, cols = TABLES[kind]
  where = ' AND '.join(f'{k} = ?' for k in key)
  existing = conn.execute(
      f'SELECT {", ".join(cols)} FROM {table} WHERE ' f'{where}',
      tuple(row[k] for k in key),
  ).fetchone()
  if existing is not None:
    if tuple(existing) != tuple(row[c] for c in cols):
      ident = ', '.join(f'{k}={row[k]!r}' for k in key)
      raise ImportConflictError(
          f'{kind} {ident} already exists with ' f'different content'
      )
    return False
  if kind == 'vote':
    check_vote_row(conn, row)
  elif kind == 'action':
    check_one_of(row['provenance'], PROVENANCES, 'provenance', ActionError)
  insert_row(conn, table, row)
  return True


def _sort_key(item):
  """Parents before children: by table, then by key (parent actions and
  undone votes have smaller ids); robust to malformed mixed-type keys."""
  _, obj = item
  kind = obj['type']
  key = [
      (0, v, '') if isinstance(v, int) else (1, 0, str(v))
      for v in (obj.get(k) for k in TABLES[kind][1])
  ]
  return list(TABLES).index(kind), key


def import_jsonl(conn: sqlite3.Connection, path) -> dict:
  """Import an export in one transaction; counts of inserted rows per type
  (plus 'skipped' identical rows). Any error: nothing is written."""
  lines = sorted(_read_lines(path), key=_sort_key)
  order = list(TABLES)
  counts = dict.fromkeys(order, 0)
  counts['skipped'] = 0
  conn.execute('BEGIN IMMEDIATE')
  try:
    # Checked at COMMIT instead of per row, so the file's order cannot matter.
    conn.execute('PRAGMA defer_foreign_keys = ON')
    for n, obj in lines:
      try:
        inserted = _insert_or_match(
            conn, obj['type'], _db_row(obj['type'], obj)
        )
      except (StoreError, sqlite3.Error) as e:
        raise ImportConflictError(f'{path} line {n}: {e}') from e
      counts[obj['type'] if inserted else 'skipped'] += 1
    try:
      conn.execute('COMMIT')
    except sqlite3.IntegrityError as e:
      raise ImportConflictError(
          f'{path}: {e} (a row refers to a scene, '
          f'action, pair or vote that is missing)'
      ) from e
  except BaseException:
    if conn.in_transaction:
      conn.execute('ROLLBACK')
    raise
  return counts


# ---------------------------------------------------------------- the store's


class StoreFiles:
  """PNG-cache and JSONL methods of ``PreferenceStore`` (which gives them
  ``conn``, ``transaction``, ``images_dir`` and ``_action_exists``); each
  delegates to this module's function of the same name."""

  def put_image(self, png_bytes) -> str:
    """Cache PNG bytes under their sha256 (atomic write); the sha256."""
    return put_image(self.images_dir, png_bytes)

  def image_path(self, sha256: str) -> Path:
    """Where the cached PNG with this sha256 lives (it may not exist)."""
    return image_path(self.images_dir, sha256)

  def add_render(
      self, scene_id: str, action_id: int, render_key: str, png_bytes
  ) -> str:
    """Cache a rendering of an action under a camera/settings key; its sha.

    Renders are deterministic per key, so a different image for an existing
    (scene, action, key) is refused: render with new settings under a new key.
    """
    check_text(render_key, 'render_key', ImageError)
    action_id = check_int(action_id, 'action_id', ImageError)
    sha = self.put_image(png_bytes)
    rel = self.image_path(sha).relative_to(self.images_dir).as_posix()
    with self.transaction() as conn:
      if not self._action_exists(conn, scene_id, action_id):
        raise ImageError(f'unknown action {action_id} in scene {scene_id!r}')
      old = conn.execute(
          'SELECT png_sha256 FROM renders WHERE scene_id = ? AND action_id = ? '
          'AND render_key = ?',
          (scene_id, action_id, render_key),
      ).fetchone()
      if old is not None and old[0] != sha:
        raise ImageError(
            f'action {action_id} of scene {scene_id!r} already '
            f'has a different render under key {render_key!r}'
        )
      if old is None:
        insert_row(
            conn,
            'renders',
            dict(
                scene_id=scene_id,
                action_id=action_id,
                render_key=render_key,
                png_sha256=sha,
                path=rel,
                created=time.time(),
            ),
        )
    return sha

  def render_path(
      self, scene_id: str, action_id: int, render_key: str
  ) -> Optional[Path]:
    """The cached PNG of a render, or None when it was never stored."""
    row = self.conn.execute(
        'SELECT path FROM renders WHERE scene_id = ? AND action_id = ? AND '
        'render_key = ?',
        (scene_id, action_id, render_key),
    ).fetchone()
    return None if row is None else self.images_dir / row[0]

  def export_jsonl(self, path) -> dict:
    """Write all tables to a JSONL file (see ``store_io``); line counts."""
    return export_jsonl(self.conn, path)

  def import_jsonl(self, path) -> dict:
    """Import a JSONL export in one transaction; inserted-row counts."""
    return import_jsonl(self.conn, path)
