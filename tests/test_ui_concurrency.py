"""The real server (waitress, subprocess) under 4 concurrent inspectors, with
a SIGKILL and a restart in the middle: every acknowledged vote is in the
store exactly once, and retried votes (same vote_id) are never duplicated.
Each inspector signs its requests with its own token; the leases handed out
before the kill stay valid after the restart (they are signed, the secret
file persists)."""

import http.client
import itertools
import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from rlhf_tf.preferences.store import PreferenceStore
from rlhf_tf.ui import auth

pytest.importorskip('waitress')
pytestmark = pytest.mark.subprocesses  # tests/conftest.py queues it mid-run

REPO = Path(__file__).resolve().parents[1]
CLIENTS, VOTES = 4, 500
INSPECTORS = [f'insp{i}' for i in range(CLIENTS)]
SERVER = f"""
import sys
from rlhf_tf.ui import app, auth
PNG = bytes.fromhex('89504e470d0a1a0a')  # never requested here
keys = auth.keys_for_store(sys.argv[1], {INSPECTORS!r})
a = app.create_app(sys.argv[1], lambda s, i: PNG, keys, lease_seconds=120,
                   overlap=1.0)
app.serve(a, '127.0.0.1', int(sys.argv[2]), threads=8)
"""
TOKENS = {}  # inspector -> bearer token, from the store's secret file


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def post(port, path, body, timeout=10.0):
  """(status, JSON) -- raises OSError / HTTPException on connection trouble.
  Signed in as the body's inspector."""
  conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
  try:
    conn.request(
        'POST',
        path,
        json.dumps(body),
        {
            'Content-Type': 'application/json',
            'Authorization': f'Bearer {TOKENS[body["inspector"]]}',
        },
    )
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b'{}')
  finally:
    conn.close()


def post_retrying(port, path, body, deadline):
  """Retry on connection errors only (the server may be down)."""
  while True:
    try:
      return post(port, path, body)
    except (OSError, http.client.HTTPException):
      if time.time() > deadline:
        raise
      time.sleep(0.05)


def start_server(script, store, port):
  proc = subprocess.Popen(
      [sys.executable, str(script), str(store), str(port)],
      cwd=REPO,
      env=dict(os.environ, PYTHONPATH=str(REPO)),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
  )
  deadline = time.time() + 30
  while time.time() < deadline:
    try:
      conn = http.client.HTTPConnection('127.0.0.1', port, timeout=1)
      conn.request('GET', '/healthz')
      if conn.getresponse().status == 200:
        return proc
    except OSError:
      time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
  raise TimeoutError('server did not start')


def client(port, inspector, acked, sent, errors, deadline):
  """One inspector: next + vote, VOTES times; records acknowledged votes."""
  try:
    for k in range(VOTES):
      status, got = post_retrying(
          port, '/api/next', dict(inspector=inspector), deadline
      )
      assert status == 200 and got['pair'], got
      p = got['pair']
      body = dict(
          inspector=inspector,
          scene_id=p['scene_id'],
          pair_id=p['pair_id'],
          left_action=p['left_action'],
          right_action=p['right_action'],
          choice='left' if k % 3 else 'equal',
          vote_id=f'{inspector}-{k:04d}-x',
          lease=p['lease'],
      )
      sent.append(body['vote_id'])
      status, got = post_retrying(port, '/api/vote', body, deadline)
      assert status == 200, got
      acked.append((body['vote_id'], got['event_id']))
  except Exception as e:  # pylint: disable=broad-except
    errors.append(repr(e))


def test_votes_survive_sigkill_and_retries_are_idempotent(tmp_path):
  store_path = tmp_path / 'p.sqlite'
  with PreferenceStore(store_path) as s:
    s.add_scene('s0')
    s.add_actions(
        's0',
        [[[0.1, 0.1], [0.4, 0.1], [0.2 + i / 200, 0.5]] for i in range(46)],
        'random',
    )
    s.add_pairs('s0', list(itertools.combinations(range(46), 2)))  # 1035
  keys = auth.keys_for_store(store_path, INSPECTORS)
  TOKENS.update({name: keys.token(name) for name in INSPECTORS})
  script = tmp_path / 'server.py'
  script.write_text(SERVER)
  port = free_port()
  proc = start_server(script, store_path, port)
  acked, sent, errors = [], [], []
  deadline = time.time() + 120
  threads = [
      threading.Thread(
          target=client, args=(port, name, acked, sent, errors, deadline)
      )
      for name in INSPECTORS
  ]
  try:
    for t in threads:
      t.start()
    while len(acked) < CLIENTS * VOTES // 3 and not errors:
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-way: no chance to clean up
    proc.wait()
    killed_at = len(acked)
    proc = start_server(script, store_path, port)
    for t in threads:
      t.join(timeout=max(1.0, deadline - time.time()))
    assert not errors, errors
    assert killed_at < CLIENTS * VOTES
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert len(acked) == CLIENTS * VOTES
  with PreferenceStore(store_path) as s:
    rows = s.conn.execute(
        "SELECT session, event_id FROM votes WHERE kind = 'vote'"
    ).fetchall()
    per_pair = s.conn.execute(
        'SELECT max(n) FROM (SELECT count(*) AS n FROM votes WHERE kind = '
        "'vote' GROUP BY inspector, pair_id)"
    ).fetchone()[0]
  by_session = {}
  for session, event_id in rows:
    by_session.setdefault(session, []).append(event_id)
  for vote_id, event_id in acked:
    assert by_session.get(vote_id) == [event_id], vote_id
  assert len(rows) == len(by_session) == CLIENTS * VOTES  # no duplicates
  assert per_pair == 1  # nobody was handed a pair they had judged
