"""The preference store: schema, votes and undo, validation, JSONL, splits,
the PNG cache, a killed writer and concurrent writers."""

import itertools
import json
import os
from pathlib import Path
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from rlhf_tf.preferences import store as store_lib
from rlhf_tf.preferences.store import (
    ActionError,
    ImageError,
    ImportConflictError,
    PairError,
    PreferenceStore,
    SceneError,
    SchemaError,
    split_examples,
    StoreError,
    VoteError,
)

REPO = Path(__file__).resolve().parents[1]
SCENE = 'phantom-0'
SQUARE = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]
PNG = store_lib.store_io.PNG_SIGNATURE


def _polygons(n, seed=0):
  rng = np.random.RandomState(seed)
  return [rng.uniform(0, 1, (4, 2)) for _ in range(n)]


def _fill(store, scene=SCENE, n_actions=6):
  """A scene with n actions and all n(n-1)/2 pairs; {(a, b): pair_id}."""
  store.add_scene(
      scene,
      'synthetic phantom',
      {'kind': 'phantom', 'seed': 0},
      {
          'bins': 64,
          'axes': {'hu_min': -1000.0, 'hu_max': 2000.0, 'grad_max': 150.0},
      },
  )
  ids = store.add_actions(scene, _polygons(n_actions), 'random')
  combos = list(itertools.combinations(ids, 2))
  return dict(zip(combos, store.add_pairs(scene, combos)))


@pytest.fixture
def store(tmp_path):
  with PreferenceStore(tmp_path / 'prefs.sqlite') as s:
    yield s


@pytest.fixture
def filled(store):
  return store, _fill(store)


def _n_events(store):
  return store.conn.execute('SELECT count(*) FROM votes').fetchone()[0]


def _run_python(code, *args, **popen_kw):
  """A fresh interpreter running ``code`` with the repository importable."""
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.Popen(
      [sys.executable, '-c', textwrap.dedent(code), *map(str, args)],
      cwd=REPO,
      env=env,
      **popen_kw,
  )


# ------------------------------------------------------------------ schema


def test_schema_created_and_reopen_keeps_data(tmp_path):
  path = tmp_path / 'sub' / 'prefs.sqlite'
  with PreferenceStore(path) as s:
    pairs = _fill(s)
    event = s.record_vote(SCENE, pairs[(0, 1)], 1, 0, 'left', 'inspector-1')
    conn = s.conn
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert {'scenes', 'actions', 'pairs', 'renders', 'votes'} <= tables
    assert conn.execute('PRAGMA user_version').fetchone()[0] == (
        store_lib.SCHEMA_VERSION
    )
    assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    assert conn.execute('PRAGMA foreign_keys').fetchone()[0] == 1
    assert conn.execute('PRAGMA synchronous').fetchone()[0] == 2  # FULL
  with PreferenceStore(path) as s:
    assert [v.event_id for v in s.effective_votes()] == [event]
    assert s.training_examples() == [(SCENE, 1, 0, 1.0)]
    assert len(s.pairs(SCENE)) == 15
    assert s.scenes()[0]['jh_meta']['bins'] == 64
    np.testing.assert_allclose(s.vertices_array(SCENE), _polygons(6), rtol=1e-6)


def test_open_refuses_foreign_files_and_leaves_them_untouched(tmp_path):
  junk = tmp_path / 'junk.sqlite'
  junk.write_bytes(b'not a database at all' * 100)
  with pytest.raises(SchemaError, match='not a SQLite database'):
    PreferenceStore(junk)
  assert junk.read_bytes() == b'not a database at all' * 100
  other = tmp_path / 'other.sqlite'
  conn = sqlite3.connect(other)
  conn.execute('CREATE TABLE t (x)')
  conn.commit()
  conn.close()
  before = other.read_bytes()
  with pytest.raises(SchemaError, match='not a preference store'):
    PreferenceStore(other)
  assert other.read_bytes() == before
  newer = tmp_path / 'newer.sqlite'
  PreferenceStore(newer).close()
  conn = sqlite3.connect(newer)
  conn.execute('PRAGMA user_version = 99')
  conn.close()
  with pytest.raises(SchemaError, match='schema version 99'):
    PreferenceStore(newer)


def test_store_refuses_use_from_another_process(store):
  store._pid = -1  # what a forked child would see
  with pytest.raises(StoreError, match='open a new PreferenceStore'):
    store.vote_counts()


# ------------------------------------------------------------------ votes


def test_votes_undo_effective_votes_and_targets(filled):
  s, pairs = filled
  e_left = s.record_vote(
      SCENE,
      pairs[(0, 1)],
      0,
      1,
      'left',
      'inspector-1',
      session='s1',
      shown_at=100.0,
      answered_at=103.5,
  )
  e_right = s.record_vote(SCENE, pairs[(2, 3)], 3, 2, 'right', 'inspector-1')
  e_equal = s.record_vote(
      SCENE, pairs[(1, 4)], 4, 1, 'equal', 'inspector-2', source='simulated'
  )
  s.record_vote(SCENE, pairs[(0, 5)], 0, 5, 'skip', 'inspector-1')
  e_undone = s.record_vote(SCENE, pairs[(3, 4)], 3, 4, 'left', 'inspector-2')
  undo = s.record_undo('inspector-2')
  assert s.event(undo).undoes_event_id == e_undone
  assert s.event(undo).kind == 'undo'
  assert [v.event_id for v in s.effective_votes()] == [e_left, e_right, e_equal]
  assert s.event(e_left).answered_at - s.event(e_left).shown_at == 3.5
  assert s.training_examples() == [
      (SCENE, 0, 1, 1.0),
      (SCENE, 3, 2, 0.0),
      (SCENE, 4, 1, 0.5),
  ]
  assert s.training_examples(source='simulated') == [(SCENE, 4, 1, 0.5)]
  assert [v.event_id for v in s.effective_votes(inspector='inspector-1')] == [
      e_left,
      e_right,
  ]
  assert s.vote_counts() == dict(
      events=6,
      votes=5,
      undone=1,
      left=1,
      right=1,
      equal=1,
      both_bad=0,
      skip=1,
      effective=3,
  )
  assert s.judged_pairs('inspector-1') == {
      (SCENE, pairs[(0, 1)]),
      (SCENE, pairs[(2, 3)]),
      (SCENE, pairs[(0, 5)]),
  }
  assert s.judged_pairs('inspector-1', include_skips=False) == {
      (SCENE, pairs[(0, 1)]),
      (SCENE, pairs[(2, 3)]),
  }
  assert s.judged_pairs('inspector-2') == {(SCENE, pairs[(1, 4)])}


def test_undo_walks_back_and_respects_sessions(filled):
  s, pairs = filled
  first = s.record_vote(
      SCENE, pairs[(0, 1)], 0, 1, 'left', 'inspector-1', session='a'
  )
  second = s.record_vote(
      SCENE, pairs[(0, 2)], 0, 2, 'skip', 'inspector-1', session='b'
  )
  undo = s.event(s.record_undo('inspector-1', session='a'))
  assert undo.undoes_event_id == first
  assert s.event(s.record_undo('inspector-1')).undoes_event_id == second
  n = _n_events(s)
  with pytest.raises(
      VoteError, match="inspector 'inspector-1' has no vote to undo"
  ):
    s.record_undo('inspector-1')
  with pytest.raises(VoteError, match='no vote to undo'):
    s.record_undo('nobody')
  assert _n_events(s) == n
  assert s.effective_votes() == [] and s.judged_pairs('inspector-1') == set()


def test_repeated_votes_all_count_unless_latest_only(filled):
  s, pairs = filled
  p = pairs[(0, 1)]
  s.record_vote(SCENE, p, 0, 1, 'left', 'inspector-1')
  s.record_vote(SCENE, p, 1, 0, 'left', 'inspector-1')
  # A skip never supersedes.
  s.record_vote(SCENE, p, 1, 0, 'skip', 'inspector-1')
  s.record_vote(SCENE, p, 0, 1, 'equal', 'inspector-2')
  assert s.training_examples() == [
      (SCENE, 0, 1, 1.0),
      (SCENE, 1, 0, 1.0),
      (SCENE, 0, 1, 0.5),
  ]
  assert s.training_examples(latest_only=True) == [
      (SCENE, 1, 0, 1.0),
      (SCENE, 0, 1, 0.5),
  ]


@pytest.mark.parametrize(
    'change, message',
    [
        (dict(pair_id=17), "unknown pair 17 in scene 'phantom-0'"),
        (dict(scene_id='nope'), "unknown scene 'nope'"),
        (dict(left_action=3), r'shown actions \(3, 1\) do not match pair 0'),
        (dict(right_action=0), r'shown actions \(0, 0\) do not match'),
        (
            dict(choice='maybe'),
            'choice must be one of left, right, equal, both_bad, skip; '
            "got 'maybe'",
        ),
        (dict(inspector=''), 'inspector must be a non-empty string'),
        (dict(inspector=None), 'inspector must be a non-empty string'),
        (
            dict(source='robot'),
            "source must be one of human, simulated; got 'robot'",
        ),
        (dict(pair_id='0'), 'pair_id must be an integer'),
        (dict(shown_at='yesterday'), 'shown_at must be unix seconds'),
        (dict(answered_at=float('nan')), 'answered_at must be finite'),
        (dict(session=5), 'session must be a string or None'),
    ],
)
def test_malformed_votes_are_rejected_and_nothing_written(
    filled, change, message
):
  s, pairs = filled
  s.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'left', 'inspector-1')
  kwargs = dict(
      scene_id=SCENE,
      pair_id=pairs[(0, 1)],
      left_action=0,
      right_action=1,
      choice='right',
      inspector='inspector-1',
  )
  kwargs.update(change)
  with pytest.raises(VoteError, match=message):
    s.record_vote(**kwargs)
  assert _n_events(s) == 1
  assert s.training_examples() == [(SCENE, 0, 1, 1.0)]


def test_vote_log_is_append_only(filled):
  s, pairs = filled
  s.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'left', 'inspector-1')
  for sql in ("UPDATE votes SET choice = 'right'", 'DELETE FROM votes'):
    with pytest.raises(sqlite3.IntegrityError, match='append-only'):
      s.conn.execute(sql)
  assert s.training_examples() == [(SCENE, 0, 1, 1.0)]


def test_numpy_ids_are_accepted(filled):
  s, pairs = filled
  a, b = np.int64(2), np.int32(4)
  event = s.record_vote(
      SCENE, np.int64(pairs[(2, 4)]), b, a, 'left', 'inspector-1'
  )
  assert s.event(event).left_action == 4
  assert isinstance(s.event(event).left_action, int)


# ------------------------------------------------ scenes, actions, pairs


def test_pairs_validation(filled):
  s, pairs = filled
  n = len(s.pairs(SCENE))
  cases = [
      ([(2, 2)], 'compares action 2 with itself'),
      ([(1, 0)], r'pair \(0, 1\) already exists .* as pair 0'),
      ([(2, 9)], "unknown action 9 in scene 'phantom-0'"),
      ([(True, 2)], 'must be an integer'),
  ]
  for bad, message in cases:
    with pytest.raises(PairError, match=message):
      s.add_pairs(SCENE, bad)
  with pytest.raises(PairError, match=r'pair \(0, 6\) appears twice'):
    s.add_pairs(SCENE, [(0, 6), (6, 0)])
  with pytest.raises(PairError, match="unknown scene 'other'"):
    s.add_pairs('other', [(0, 1)])
  assert len(s.pairs(SCENE)) == n
  new = s.add_actions(SCENE, [SQUARE], 'expert')
  assert new == [6]
  # A failing batch writes nothing, even its valid pairs.
  with pytest.raises(PairError, match='already exists'):
    s.add_pairs(SCENE, [(0, 6), (0, 1)])
  assert len(s.pairs(SCENE)) == n
  assert s.add_pairs(SCENE, [(6, 0)]) == [n]
  assert s.pairs(SCENE)[-1] == (SCENE, n, 0, 6)
  assert s.pair_id(SCENE, 6, 0) == n and s.pair_id(SCENE, 5, 6) is None


def test_scene_and_action_validation(store):
  store.add_scene(SCENE)
  with pytest.raises(SceneError, match="scene 'phantom-0' already exists"):
    store.add_scene(SCENE)
  with pytest.raises(SceneError, match='not JSON-serialisable'):
    store.add_scene('x', volume_source={'path': object()})
  with pytest.raises(ActionError, match='provenance must be one of random'):
    store.add_actions(SCENE, [SQUARE], 'guessed')
  with pytest.raises(ActionError, match=r'shape \[n >= 3, 2\]'):
    store.add_actions(SCENE, [[[0.1, 0.1], [0.2, 0.2]]], 'random')
  with pytest.raises(ActionError, match=r'in \[0, 1\]'):
    store.add_actions(SCENE, [[[0.1, 0.1], [0.2, 1.5], [0.3, 0.1]]], 'random')
  with pytest.raises(ActionError, match='unknown parent action 4'):
    store.add_actions(SCENE, [SQUARE], 'augmented', parent_ids=[4])
  with pytest.raises(ActionError, match="unknown scene 'nope'"):
    store.add_actions('nope', [SQUARE], 'random')
  assert store.actions(SCENE) == []
  base = store.add_actions(SCENE, [SQUARE, SQUARE], 'expert')
  kids = store.add_actions(
      SCENE, [SQUARE, SQUARE], 'augmented', parent_ids=[base[1], None]
  )
  assert base == [0, 1] and kids == [2, 3]
  acts = store.actions(SCENE)
  assert [a.parent_action_id for a in acts] == [None, None, 1, None]
  assert [a.provenance for a in acts] == ['expert'] * 2 + ['augmented'] * 2
  assert acts[2].vertices == tuple(map(tuple, SQUARE))


# ------------------------------------------------------------------ JSONL


def _some_votes(s, pairs):
  s.record_vote(
      SCENE,
      pairs[(0, 1)],
      1,
      0,
      'left',
      'inspector-1',
      session='s',
      shown_at=1.0,
      answered_at=2.5,
  )
  s.record_vote(SCENE, pairs[(0, 2)], 0, 2, 'equal', 'inspector-1')
  s.record_vote(SCENE, pairs[(1, 2)], 2, 1, 'skip', 'inspector-2')
  s.record_vote(
      SCENE, pairs[(3, 4)], 3, 4, 'right', 'inspector-2', source='simulated'
  )
  s.record_vote(SCENE, pairs[(4, 5)], 5, 4, 'left', 'inspector-2')
  s.record_undo('inspector-2')


def test_jsonl_round_trip(filled, tmp_path):
  s, pairs = filled
  s.add_actions(SCENE, [SQUARE], 'augmented', parent_ids=[2])
  s.add_render(SCENE, 0, 'front-512', PNG + b'img0')
  _some_votes(s, pairs)
  out = tmp_path / 'export.jsonl'
  counts = s.export_jsonl(out)
  assert counts == dict(scene=1, action=7, pair=15, render=1, vote=6)
  lines = [json.loads(line) for line in out.read_text().splitlines()]
  assert lines[0]['type'] == 'header'
  assert any(x['type'] == 'vote' and x['kind'] == 'undo' for x in lines)
  with PreferenceStore(tmp_path / 'copy' / 'prefs.sqlite') as t:
    assert t.import_jsonl(out)['vote'] == 6
    assert t.effective_votes() == s.effective_votes()
    assert t.training_examples() == s.training_examples()
    assert t.actions(SCENE) == s.actions(SCENE)
    assert t.scenes() == s.scenes()
    assert t.vote_counts() == s.vote_counts()
    # Re-importing the same file is a no-op; new events continue the ids.
    assert t.import_jsonl(out)['skipped'] == len(lines) - 1
    assert t.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'left', 'cy') == 7


def test_jsonl_conflicting_import_writes_nothing(filled, tmp_path):
  s, pairs = filled
  _some_votes(s, pairs)
  out = tmp_path / 'export.jsonl'
  s.export_jsonl(out)
  with PreferenceStore(tmp_path / 'other.sqlite') as t:
    t.add_scene('other-scene')
    t.add_scene(SCENE, 'a different description')
    with pytest.raises(
        ImportConflictError,
        match="line 2: scene scene_id='phantom-0' already "
        'exists with different content',
    ):
      t.import_jsonl(out)
    assert t.actions(SCENE) == [] and t.pairs(SCENE) == []
    assert _n_events(t) == 0
  # Same history up to event 6, then each store records its own event 7.
  with PreferenceStore(tmp_path / 'third.sqlite') as t:
    t.import_jsonl(out)
    t.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'right', 'zed')
    s.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'left', 'inspector-1')
    s.add_scene('new-scene')  # exported before the clashing vote line
    s.export_jsonl(out)
    with pytest.raises(
        ImportConflictError,
        match='vote event_id=7 already exists with different',
    ):
      t.import_jsonl(out)
    assert _n_events(t) == 7 and len(t.scenes()) == 1


def test_jsonl_malformed_lines_are_rejected(filled, tmp_path):
  s, pairs = filled
  _some_votes(s, pairs)
  out = tmp_path / 'export.jsonl'
  s.export_jsonl(out)
  lines = out.read_text().splitlines()
  vote = json.loads(lines[-2])
  bad_vote = dict(vote, event_id=99, choice='maybe')
  cases = [
      ('{"type": "vote", ', 'not JSON'),
      ('{"type": "ballot"}', "unknown line type 'ballot'"),
      (json.dumps(bad_vote), 'choice must be one of'),
      (
          json.dumps(dict(vote, event_id=98, pair_id=77)),
          "unknown pair 77 in scene 'phantom-0'",
      ),
  ]
  for extra, message in cases:
    path = tmp_path / 'bad.jsonl'
    path.write_text('\n'.join(lines + [extra]) + '\n')
    with PreferenceStore(tmp_path / f'{len(message)}.sqlite') as t:
      with pytest.raises(ImportConflictError, match=message):
        t.import_jsonl(path)
      assert t.scenes() == [] and _n_events(t) == 0


# ------------------------------------------------------------------ splits


def _examples(n_actions=30, votes_per_pair=2):
  ex = []
  for a, b in itertools.combinations(range(n_actions), 2):
    for k in range(votes_per_pair):
      ex.append(('s', a, b, 1.0) if k % 2 == 0 else ('s', b, a, 0.5))
  return ex


def test_split_by_pair_is_deterministic_and_keeps_pairs_together():
  ex = _examples()
  train, held = split_examples(ex, 0.2, seed=3, by='pair')
  assert (train, held) == split_examples(ex, 0.2, seed=3, by='pair')
  assert (train, held) != split_examples(ex, 0.2, seed=4, by='pair')
  assert len(train) + len(held) == len(ex)
  key = lambda e: (e[0], min(e[1], e[2]), max(e[1], e[2]))
  assert not {key(e) for e in train} & {key(e) for e in held}
  assert 0.1 < len(held) / len(ex) < 0.3
  # Adding votes does not move existing pairs across the split.
  more, _ = split_examples(ex + ex[:10], 0.2, seed=3, by='pair')
  assert more[: len(train)] == train
  assert split_examples(ex, 0.0, 1) == (ex, [])
  assert split_examples(ex, 1.0, 1) == ([], ex)


def test_split_by_action_has_no_leakage():
  ex = _examples()
  train, held = split_examples(ex, 0.3, seed=0, by='action')
  assert (train, held) == split_examples(ex, 0.3, seed=0, by='action')
  train_actions = {a for e in train for a in e[1:3]}
  held_actions = {a for e in held for a in e[1:3]}
  assert held and train and not train_actions & held_actions
  assert len(train) + len(held) < len(ex)  # mixed pairs dropped
  for bad in (
      dict(held_out_fraction=1.5),
      dict(held_out_fraction='x'),
      dict(by='scene'),
  ):
    kwargs = dict(held_out_fraction=0.2, seed=0, by='pair')
    kwargs.update(bad)
    with pytest.raises(ValueError):
      split_examples(ex, **kwargs)


# ------------------------------------------------------------------ images


def test_content_addressed_image_cache(filled):
  s, _ = filled
  data = PNG + b'some pixels'
  sha = s.put_image(data)
  assert s.put_image(bytearray(data)) == sha
  path = s.image_path(sha)
  assert path.read_bytes() == data
  assert path.parent.parent == s.images_dir
  assert path.name == f'{sha}.png' and path.parent.name == sha[:2]
  assert [p.name for p in s.images_dir.rglob('*') if p.is_file()] == [path.name]
  with pytest.raises(ImageError, match='not a PNG'):
    s.put_image(b'GIF89a')
  with pytest.raises(ImageError, match='not a lowercase hex sha256'):
    s.image_path('../../etc/passwd')
  assert s.add_render(SCENE, 0, 'front', data) == sha
  assert s.add_render(SCENE, 0, 'front', data) == sha  # idempotent
  assert s.render_path(SCENE, 0, 'front') == path
  assert s.render_path(SCENE, 1, 'front') is None
  with pytest.raises(ImageError, match='already has a different render'):
    s.add_render(SCENE, 0, 'front', PNG + b'other pixels')
  with pytest.raises(ImageError, match='unknown action 42'):
    s.add_render(SCENE, 42, 'front', data)


# ------------------------------------------------ crashes, concurrency

KILLED_WRITER = """
import sys, time
from rlhf_tf.preferences.store import PreferenceStore
s = PreferenceStore(sys.argv[1])
for _ in range(3):  # committed by this process before it dies
  s.record_vote('phantom-0', 0, 0, 1, 'right', 'victim')
conn = s.conn
conn.execute('BEGIN IMMEDIATE')
conn.execute(
    "INSERT INTO votes (kind, scene_id, pair_id, left_action, right_action, "
    "choice, inspector, source, created) VALUES "
    "('vote', 'phantom-0', 0, 0, 1, 'left', 'partial', 'human', 0.0)")
print('ready', flush=True)
time.sleep(60)
"""


def test_killed_writer_loses_nothing_committed_and_leaves_no_partial_vote(
    tmp_path,
):
  path = tmp_path / 'prefs.sqlite'
  with PreferenceStore(path) as s:
    pairs = _fill(s)
    before = [
        s.record_vote(SCENE, pairs[(0, 1)], 1, 0, 'left', 'inspector-1')
        for _ in range(5)
    ]
  proc = _run_python(KILLED_WRITER, path, stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == 'ready'
  finally:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
  assert proc.returncode == -signal.SIGKILL
  with PreferenceStore(path) as s:
    votes = s.effective_votes()
    assert [v.event_id for v in votes][:5] == before
    assert [v.inspector for v in votes] == ['inspector-1'] * 5 + ['victim'] * 3
    assert not s.effective_votes(inspector='partial')
    # The dead writer's lock is gone: writing works again.
    assert s.record_vote(SCENE, pairs[(0, 1)], 0, 1, 'equal', 'inspector-1') > 0
    check = s.conn.execute('PRAGMA integrity_check').fetchone()[0]
    assert check == 'ok'


CONCURRENT_WRITER = """
import sys, time
from pathlib import Path
from rlhf_tf.preferences.store import PreferenceStore
path, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = PreferenceStore(path)
go = Path(path).parent / 'go'
while not go.exists():  # start together, to contend for the write lock
  time.sleep(0.005)
for i in range(n):
  a, b = i % 6, (i + 1 + worker) % 6
  if a == b:
    b = (b + 1) % 6
  pair = s.pair_id('phantom-0', a, b)
  s.record_vote('phantom-0', pair, a, b, ('left', 'right', 'equal')[i % 3],
                f'worker-{worker}', 'simulated', session=str(worker))
"""


def test_concurrent_writers(tmp_path):
  path = tmp_path / 'prefs.sqlite'
  with PreferenceStore(path) as s:
    _fill(s)
  n_workers, n_votes = 4, 500
  start = time.monotonic()
  procs = [
      _run_python(CONCURRENT_WRITER, path, w, n_votes) for w in range(n_workers)
  ]
  (tmp_path / 'go').touch()
  codes = [p.wait(timeout=120) for p in procs]
  elapsed = time.monotonic() - start
  assert codes == [0] * n_workers
  with PreferenceStore(path) as s:
    votes = s.effective_votes()
    assert len(votes) == n_workers * n_votes
    assert len({v.event_id for v in votes}) == n_workers * n_votes
    for w in range(n_workers):
      assert len(s.effective_votes(inspector=f'worker-{w}')) == n_votes
    assert s.vote_counts()['effective'] == n_workers * n_votes
  assert elapsed < 60, f'{elapsed:.1f} s for {n_workers * n_votes} votes'
