"""The preference web app through Flask's test client (no server, no JAX).

Requests are signed in as the inspector their body names (``AuthClient``),
as that inspector's own browser would be; tests/test_ui_auth.py checks what
happens when they are not.
"""

import io
import itertools
import json
import sqlite3

import flask.testing
import numpy as np
import pytest

from rlhf_tf.preferences.store import PreferenceStore
from rlhf_tf.ui import auth
from rlhf_tf.ui import pairs as pairs_lib
from rlhf_tf.ui import results as results_lib
from rlhf_tf.ui.app import create_app as _create_app

SCENE = 's0'
LEASE = 120.0
KEYS = auth.InspectorKeys(
    b'test-secret-0123456789', ['inspector-1', 'inspector-2', 'inspector-3']
)


def bearer(inspector: str) -> dict:
  return {'Authorization': f'Bearer {KEYS.token(inspector)}'}


class AuthClient(flask.testing.FlaskClient):
  """Signs each POST in as the inspector its JSON body names (unless the
  request brings its own Authorization header)."""

  def open(self, *args, **kwargs):
    body = kwargs.get('json')
    headers = dict(kwargs.pop('headers', None) or {})
    if (
        isinstance(body, dict)
        and body.get('inspector') in KEYS.inspectors
        and 'Authorization' not in headers
    ):
      headers.update(bearer(body['inspector']))
    return super().open(*args, headers=headers, **kwargs)


def create_app(path, render, **kw):
  app = _create_app(path, render, KEYS, **kw)
  app.test_client_class = AuthClient
  return app


def tiny_png(value: int = 0) -> bytes:
  from PIL import Image

  buf = io.BytesIO()
  Image.new('RGB', (4, 4), (value % 256, 40, 90)).save(buf, 'PNG')
  return buf.getvalue()


def square(i: int):
  x = 0.02 + 0.05 * i
  return [[x, 0.1], [x + 0.3, 0.1], [x + 0.3, 0.4], [x, 0.4]]


def make_store(path, num_actions=6, pair_list=None):
  """A scene with ``num_actions`` actions and the given (default: all)
  pairs."""
  with PreferenceStore(path) as s:
    s.add_scene(SCENE)
    s.add_actions(SCENE, [square(i) for i in range(num_actions)], 'random')
    s.add_pairs(
        SCENE, pair_list or list(itertools.combinations(range(num_actions), 2))
    )
  return path


class Clock:

  def __init__(self, t=1_700_000_000.0):
    self.t = t

  def __call__(self):
    return self.t


@pytest.fixture
def env(tmp_path):
  """(store path, clock, render call log, app factory)."""
  path = make_store(tmp_path / 'p.sqlite')
  clock = Clock()
  calls = []

  def render(scene_id, action_id):
    calls.append((scene_id, action_id))
    return tiny_png(action_id)

  def factory(**kw):
    kw.setdefault('clock', clock)
    kw.setdefault('lease_seconds', LEASE)
    return create_app(path, render, **kw).test_client()

  return path, clock, calls, factory


def next_pair(client, inspector):
  r = client.post('/api/next', json=dict(inspector=inspector))
  assert r.status_code == 200, r.json
  return r.json['pair']


def vote(client, inspector, pair, choice, vote_id=None, status=200):
  """Answers a pair; one not handed out by /api/next gets the lease the
  server would have signed for it."""
  lease = pair.get('lease') or KEYS.sign_lease(
      auth.SignedLease(
          inspector,
          pair['scene_id'],
          pair['pair_id'],
          pair['left_action'],
          pair['right_action'],
          1_700_000_000.0,
      )
  )
  body = dict(
      inspector=inspector,
      scene_id=pair['scene_id'],
      pair_id=pair['pair_id'],
      left_action=pair['left_action'],
      right_action=pair['right_action'],
      choice=choice,
      lease=lease,
      vote_id=vote_id or f'v{np.random.randint(1 << 40):012d}',
  )
  r = client.post('/api/vote', json=body)
  assert r.status_code == status, r.json
  return r.json


def test_vote_records_order_inspector_and_times(env):
  path, clock, _, factory = env
  c = factory()
  pair = next_pair(c, 'inspector-1')
  assert pair['shown_at'] == clock.t
  clock.t += 7.5
  ack = vote(c, 'inspector-1', pair, 'left', vote_id='first-vote-1')
  with PreferenceStore(path) as s:
    (v,) = s.effective_votes()
  assert v.event_id == ack['event_id'] and not ack['duplicate']
  assert (v.inspector, v.choice, v.session) == (
      'inspector-1',
      'left',
      'first-vote-1',
  )
  assert (v.left_action, v.right_action) == (
      pair['left_action'],
      pair['right_action'],
  )
  assert (v.shown_at, v.answered_at) == (clock.t - 7.5, clock.t)
  assert ack['progress']['votes'] == 1
  assert next_pair(c, 'inspector-1')['pair_id'] != pair['pair_id']


def test_sides_are_randomised(env):
  _, _, _, factory = env
  c = factory()
  flipped = []
  for _ in range(15):
    p = next_pair(c, 'inspector-1')
    flipped.append(p['left_action'] > p['right_action'])
    vote(c, 'inspector-1', p, 'equal')
  assert 0 < sum(flipped) < 15


def test_retried_vote_is_stored_once(env):
  path, _, _, factory = env
  c = factory()
  pair = next_pair(c, 'inspector-1')
  a = vote(c, 'inspector-1', pair, 'right', vote_id='retry-me-1')
  b = vote(c, 'inspector-1', pair, 'right', vote_id='retry-me-1')
  assert a['event_id'] == b['event_id'] and b['duplicate']
  r = vote(c, 'inspector-1', pair, 'left', vote_id='retry-me-1', status=409)
  assert 'already used' in r['error']
  with PreferenceStore(path) as s:
    assert s.vote_counts()['votes'] == 1


def test_undo_withdraws_and_shows_the_pair_again(env):
  path, _, _, factory = env
  c = factory()
  first = next_pair(c, 'inspector-1')
  vote(c, 'inspector-1', first, 'left', vote_id='undo-target')
  second = next_pair(c, 'inspector-1')
  r = c.post(
      '/api/undo', json=dict(inspector='inspector-1', vote_id='undo-target')
  )
  assert r.status_code == 200, r.json
  assert r.json['undone']['choice'] == 'left'
  again = r.json['pair']
  assert [again[k] for k in ('pair_id', 'left_action', 'right_action')] == [
      first[k] for k in ('pair_id', 'left_action', 'right_action')
  ]
  assert second['pair_id'] != again['pair_id']
  retry = c.post(
      '/api/undo', json=dict(inspector='inspector-1', vote_id='undo-target')
  )
  assert retry.json['duplicate']
  assert retry.json['event_id'] == r.json['event_id']
  with PreferenceStore(path) as s:
    assert s.effective_votes() == []
    assert s.vote_counts()['events'] == 2
  nothing = c.post('/api/undo', json=dict(inspector='inspector-1'))
  assert nothing.status_code == 409
  assert 'no vote to undo' in nothing.json['error']
  # Answer the withdrawn pair again: it counts once.
  vote(c, 'inspector-1', again, 'right')
  with PreferenceStore(path) as s:
    assert [v.choice for v in s.effective_votes()] == ['right']


def test_undo_without_vote_id_takes_the_latest(env):
  path, _, _, factory = env
  c = factory()
  vote(c, 'inspector-1', next_pair(c, 'inspector-1'), 'left')
  vote(c, 'inspector-1', next_pair(c, 'inspector-1'), 'equal')
  r = c.post('/api/undo', json=dict(inspector='inspector-1'))
  assert r.json['undone']['choice'] == 'equal'
  with PreferenceStore(path) as s:
    assert [v.choice for v in s.effective_votes()] == ['left']


def test_skip_is_not_a_vote_and_not_shown_again(env):
  path, _, _, factory = env
  c = factory(overlap=0.0)
  pair = next_pair(c, 'inspector-1')
  vote(c, 'inspector-1', pair, 'skip')
  with PreferenceStore(path) as s:
    assert s.effective_votes() == [] and s.vote_counts()['skip'] == 1
  seen = set()
  while (p := next_pair(c, 'inspector-1')) is not None:
    seen.add(p['pair_id'])
    vote(c, 'inspector-1', p, 'left')
  assert pair['pair_id'] not in seen and len(seen) == 14
  # A skip leaves the pair to another inspector even without overlap.
  assert next_pair(c, 'inspector-2')['pair_id'] == pair['pair_id']


def test_resume_after_restart(env):
  path, _, _, factory = env
  c = factory()
  judged = []
  for choice in ('left', 'right', 'equal'):
    p = next_pair(c, 'inspector-1')
    judged.append(p['pair_id'])
    vote(c, 'inspector-1', p, choice)
  del c
  c2 = factory()  # a new app on the same store: nothing in memory survives
  r = c2.post('/api/next', json=dict(inspector='inspector-1'))
  assert r.json['progress']['votes'] == 3
  assert r.json['pair']['pair_id'] not in judged
  with PreferenceStore(path) as s:
    assert [v.choice for v in s.effective_votes(inspector='inspector-1')] == [
        'left',
        'right',
        'equal',
    ]


ANN_LEASE_0 = KEYS.sign_lease(
    auth.SignedLease('inspector-1', SCENE, 0, 0, 1, 1_700_000_000.0)
)
BAD_VOTES = [
    ('forged inspector', dict(inspector='inspector-2'), 403, 'signed in as'),
    ('blank inspector', dict(inspector='   '), 403, 'signed in as'),
    ('long inspector', dict(inspector='x' * 65), 403, 'signed in as'),
    ('control char', dict(inspector='a\nb'), 403, 'signed in as'),
    ('no lease', dict(lease=None), 409, 'no valid lease'),
    (
        'forged lease',
        dict(lease=ANN_LEASE_0[:-3] + 'abc'),
        409,
        'no valid lease',
    ),
    (
        'lease of another pair',
        dict(pair_id=1, right_action=2),
        409,
        'the lease is for pair 0',
    ),
    ('huge pair id', dict(pair_id=2**70), 400, 'out of range'),
    ('huge action id', dict(left_action=2**64), 400, 'out of range'),
    ('bad choice', dict(choice='both'), 400, 'choice'),
    ('unknown scene', dict(scene_id='nope'), 404, 'unknown scene'),
    ('unknown pair', dict(pair_id=999), 404, 'unknown pair'),
    ('bool pair id', dict(pair_id=True), 400, 'pair_id'),
    ('string action', dict(left_action='0'), 400, 'left_action'),
    ('wrong actions', dict(left_action=5), 400, 'not the actions'),
    ('same action twice', dict(right_action=0, left_action=0), 400, 'not the'),
    ('short vote id', dict(vote_id='abc'), 400, 'vote_id'),
    ('odd vote id', dict(vote_id='../../etc/x'), 400, 'vote_id'),
]


@pytest.mark.parametrize(
    'name,change,status,message', BAD_VOTES, ids=[b[0] for b in BAD_VOTES]
)
def test_malformed_votes_are_rejected(env, name, change, status, message):
  path, _, _, factory = env
  c = factory()
  body = dict(
      inspector='inspector-1',
      scene_id=SCENE,
      pair_id=0,
      left_action=0,
      right_action=1,
      choice='left',
      vote_id='valid-id-1',
      lease=ANN_LEASE_0,
  )
  body.update(change)
  r = c.post('/api/vote', json=body, headers=bearer('inspector-1'))
  assert r.status_code == status, (name, r.json)
  assert message in r.json['error']
  with PreferenceStore(path) as s:
    assert s.vote_counts()['events'] == 0


@pytest.mark.parametrize(
    'url,data',
    [
        ('/api/vote', 'not json'),
        ('/api/vote', '[1, 2]'),
        ('/api/next', ''),
        ('/api/next', '{"inspector": 3}'),
        ('/api/undo', '{}'),
        ('/api/undo', '{"inspector": "inspector-1", "vote_id": 5}'),
    ],
)
def test_non_json_and_bad_bodies(env, url, data):
  r = env[3]().post(url, data=data, content_type='application/json')
  assert 400 <= r.status_code < 500 and r.json['error']


def test_wrong_shown_order_is_refused(env):
  _, _, _, factory = env
  c = factory()
  p = next_pair(c, 'inspector-1')
  swapped = dict(
      p, left_action=p['right_action'], right_action=p['left_action']
  )
  r = vote(c, 'inspector-1', swapped, 'left', status=409)
  assert 'differs from the order handed out' in r['error']


def test_get_on_post_routes_and_unknown_urls_are_json(env):
  c = env[3]()
  assert c.get('/api/vote').status_code == 405
  r = c.get('/nothing/here')
  assert r.status_code == 404 and 'error' in r.json


@pytest.mark.parametrize(
    'url',
    [
        '/render/..%2f..%2fetc/passwd.png',
        '/render/../../etc/passwd.png',
        f'/render/{SCENE}/..%2f..%2fetc%2fpasswd.png',
        '/render/%2e%2e/0.png',
        f'/render/{SCENE}/-1.png',
        f'/render/{SCENE}/99.png',
        '/render/nope/0.png',
        f'/render/{SCENE}/0.png/..',
        f'/jh/{SCENE}/0/0.png',
        '/static/../app.py',
        '/static/..%2fapp.py',
        f'/render/{SCENE}/{2**70}.png',
        f'/jh/{SCENE}/0/{2**70}.png',
        f'/jh/{SCENE}/{10**30}/1.png',
    ],
)
def test_path_traversal_refused(env, url):
  r = env[3](jh_png=lambda *a: tiny_png()).get(url)
  assert r.status_code in (400, 404), url
  assert b'root:' not in r.data and b'import' not in r.data


def test_render_is_cached_and_served_from_the_store(env):
  path, _, calls, factory = env
  c = factory()
  for _ in range(3):
    r = c.get(f'/render/{SCENE}/2.png')
    assert r.status_code == 200 and r.data == tiny_png(2)
    assert r.mimetype == 'image/png'
  assert calls == [(SCENE, 2)]
  factory().get(f'/render/{SCENE}/2.png')  # after a restart: still cached
  assert calls == [(SCENE, 2)]
  with PreferenceStore(path) as s:
    assert s.render_path(SCENE, 2, 'default').read_bytes() == tiny_png(2)


def test_render_row_pointing_outside_the_cache_is_refused(env):
  path, _, _, factory = env
  conn = sqlite3.connect(path)  # forge a corrupted row behind the store
  conn.execute(
      "INSERT INTO renders VALUES (?, 3, 'default', ?, "
      "'../../../../etc/passwd', 0)",
      (SCENE, 'a' * 64),
  )
  conn.commit()
  conn.close()
  r = factory().get(f'/render/{SCENE}/3.png')
  assert r.status_code == 404 and b'root:' not in r.data


def test_renderer_returning_garbage_is_a_500(tmp_path):
  path = make_store(tmp_path / 'p.sqlite')
  c = create_app(path, lambda s, a: b'<html>').test_client()
  r = c.get(f'/render/{SCENE}/0.png')
  assert r.status_code == 500 and 'PNG' in r.json['error']


def test_a_crash_shows_no_exception_text(tmp_path):
  path = make_store(tmp_path / 'p.sqlite')

  def render(scene_id, action_id):
    raise RuntimeError(f'cannot open /secret/dir/{scene_id}.npz')

  r = create_app(path, render).test_client().get(f'/render/{SCENE}/0.png')
  assert r.status_code == 500
  assert 'secret' not in r.get_data(as_text=True)
  assert 'RuntimeError' not in r.get_data(as_text=True)


def test_jh_overlay_is_cached(env):
  calls = []

  def jh(scene_id, left, right):
    calls.append((left, right))
    return tiny_png(left)

  c = env[3](jh_png=jh)
  p = next_pair(c, 'inspector-1')
  for _ in range(2):
    assert c.get(p['jh_url']).status_code == 200
  assert len(calls) == 1
  assert c.get(f'/jh/{SCENE}/0/0.png').status_code == 404


def test_lease_keeps_two_inspectors_apart_until_it_expires(tmp_path):
  path = make_store(tmp_path / 'p.sqlite', 4, [(0, 1), (2, 3)])
  clock = Clock()
  c = create_app(
      path,
      lambda s, a: tiny_png(),
      clock=clock,
      lease_seconds=LEASE,
      overlap=0.0,
  ).test_client()
  a = next_pair(c, 'inspector-1')
  b = next_pair(c, 'inspector-2')
  assert a['pair_id'] != b['pair_id']
  assert next_pair(c, 'inspector-3') is None  # both pairs are leased
  assert next_pair(c, 'inspector-1') == a  # asking again: same pair, same order
  clock.t += LEASE - 1
  assert next_pair(c, 'inspector-3') is None
  clock.t += 2  # both leases are over
  assert next_pair(c, 'inspector-3')['pair_id'] in (a['pair_id'], b['pair_id'])


def test_lease_on_a_single_pair(tmp_path):
  path = make_store(tmp_path / 'p.sqlite', 2, [(0, 1)])
  clock = Clock()
  c = create_app(
      path,
      lambda s, a: tiny_png(),
      clock=clock,
      lease_seconds=LEASE,
      overlap=0.0,
  ).test_client()
  assert next_pair(c, 'inspector-1')['pair_id'] == 0
  assert next_pair(c, 'inspector-2') is None
  clock.t += LEASE + 1
  assert next_pair(c, 'inspector-2')['pair_id'] == 0


def exhaust(c, inspector):
  got = []
  while (p := next_pair(c, inspector)) is not None:
    got.append(p['pair_id'])
    vote(c, inspector, p, 'left')
  return got


@pytest.mark.parametrize('overlap', [0.0, 0.5, 1.0])
def test_overlap_target(env, overlap):
  path, _, _, factory = env
  c = factory(overlap=overlap, seed=3)
  first = exhaust(c, 'inspector-1')
  assert sorted(first) == list(range(15))  # alone: inspector-1 gets every pair
  second = exhaust(c, 'inspector-2')
  wanted = [
      p for p in range(15) if pairs_lib.in_overlap_set(3, SCENE, p, overlap)
  ]
  assert sorted(second) == wanted
  if overlap == 0.5:
    assert 0 < len(wanted) < 15
  assert exhaust(c, 'inspector-3') == []  # every pair has its raters


def test_overlap_pair_can_be_leased_twice(tmp_path):
  path = make_store(tmp_path / 'p.sqlite', 2, [(0, 1)])
  c = create_app(path, lambda s, a: tiny_png(), overlap=1.0).test_client()
  assert next_pair(c, 'inspector-1')['pair_id'] == 0
  assert next_pair(c, 'inspector-2')['pair_id'] == 0  # wanted twice
  assert next_pair(c, 'inspector-3') is None  # but not three times


def test_disagreement_scores_by_hand():
  rewards = np.array([[0.0, 1.0, 2.0], [0.0, -1.0, 2.0]])
  cands = [
      pairs_lib.Candidate(SCENE, 0, 0, 1),
      pairs_lib.Candidate(SCENE, 1, 0, 2),
  ]
  s = pairs_lib.disagreement_scores(rewards, cands)
  sig = lambda x: 1 / (1 + np.exp(-x))
  p01 = np.array([sig(-1.0), sig(1.0)])
  assert s[0] == pytest.approx(p01.var())
  assert s[1] == pytest.approx(0.0)  # both models agree on (0, 2)
  with pytest.raises(ValueError):
    pairs_lib.disagreement_scores(rewards[:, :2], cands)


def test_disagreement_selection_picks_the_most_disputed_pair(env):
  _, _, _, factory = env
  rewards = np.zeros((3, 6))
  rewards[:, 1] = [0.5, 0.4, 0.6]  # mild disagreement about action 1
  rewards[0, [2, 5]] = [3.0, -3.0]  # model 0: 2 >> 5
  rewards[1, [2, 5]] = [-3.0, 3.0]  # model 1: 5 >> 2
  asked = []
  c = factory(selection='disagreement', ensemble_rewards=lambda s: rewards)
  for _ in range(3):
    p = next_pair(c, 'inspector-1')
    asked.append(tuple(sorted((p['left_action'], p['right_action']))))
    vote(c, 'inspector-1', p, 'left')
  assert asked[0] == (2, 5)
  scores = pairs_lib.disagreement_scores(
      rewards,
      [
          pairs_lib.Candidate(SCENE, i, a, b)
          for i, (a, b) in enumerate(itertools.combinations(range(6), 2))
      ],
  )
  order = [
      tuple(ab)
      for ab in np.array(list(itertools.combinations(range(6), 2)))[
          np.argsort(-scores, kind='stable')
      ]
  ]
  assert set(asked[1:]) <= set(order[:6])  # then the next most disputed
  with pytest.raises(ValueError):
    factory(selection='disagreement')


def test_results_and_kappa_against_a_hand_computation(env):
  path, _, _, factory = env
  c = factory()
  # Canonical answers ('a' = lower action id preferred) on pairs 0..4:
  answers_1 = ['a', 'a', 'b', 'equal', 'b']
  answers_2 = ['a', 'b', 'b', 'equal', 'a']
  pairs = list(itertools.combinations(range(6), 2))[:5]
  for who, answers, flip in (
      ('inspector-1', answers_1, False),
      ('inspector-2', answers_2, True),
  ):
    for pid, ((lo, hi), ans) in enumerate(zip(pairs, answers)):
      # inspector-2 sees the sides swapped.
      left, right = (hi, lo) if flip else (lo, hi)
      choice = (
          'equal'
          if ans == 'equal'
          else 'left'
          if (ans == 'a') == (left == lo)
          else 'right'
      )
      vote(
          c,
          who,
          dict(
              scene_id=SCENE, pair_id=pid, left_action=left, right_action=right
          ),
          choice,
      )
  vote(
      c,
      'inspector-1',
      dict(scene_id=SCENE, pair_id=8, left_action=1, right_action=5),
      'skip',
  )
  r = c.get('/api/results').json
  # p_o = 3/5; marginals a:2 b:2 equal:1 for both: p_e = (4 + 4 + 1) / 25.
  p_o, p_e = 0.6, 9 / 25
  assert r['agreement']['pooled']['kappa'] == pytest.approx(
      (p_o - p_e) / (1 - p_e)
  )  # 0.375
  assert r['agreement']['pooled']['percent'] == pytest.approx(60.0)
  assert r['agreement']['overlapping_pairs'] == 5
  (pair_row,) = r['agreement']['by_inspector_pair']
  assert pair_row['inspectors'] == ['inspector-1', 'inspector-2']
  assert pair_row['n'] == 5
  assert r['votes'] == 10 and r['skips'] == 1
  assert r['tie_rate'] == pytest.approx(0.2)
  by = {i['inspector']: i for i in r['inspectors']}
  assert by['inspector-1']['skip'] == 1 and by['inspector-1']['votes'] == 5
  assert by['inspector-2']['equal'] == 1
  assert by['inspector-2']['tie_rate'] == pytest.approx(0.2)
  page = c.get('/results')
  assert page.status_code == 200 and b'0.375' in page.data
  assert results_lib.cohen_kappa(['a', 'a'], ['a', 'a']) is None
  assert results_lib.cohen_kappa(['a', 'b'], ['a', 'b']) == pytest.approx(1)


def test_both_bad_is_kept_apart_from_equal(env):
  """'both_bad' is its own stored answer, results category and export
  value; both kinds count as ties in the tie rate."""
  path, _, _, factory = env
  c = factory()
  pairs = list(itertools.combinations(range(6), 2))[:2]
  for who, answers in (
      ('inspector-1', ('equal', 'both_bad')),
      ('inspector-2', ('both_bad', 'both_bad')),
  ):
    for pid, ((lo, hi), choice) in enumerate(zip(pairs, answers)):
      vote(
          c,
          who,
          dict(scene_id=SCENE, pair_id=pid, left_action=lo, right_action=hi),
          choice,
      )
  r = c.get('/api/results').json
  assert (r['votes'], r['equal'], r['both_bad']) == (4, 1, 3)
  assert r['tie_rate'] == pytest.approx(1.0)
  by = {i['inspector']: i for i in r['inspectors']}
  assert (by['inspector-1']['equal'], by['inspector-1']['both_bad']) == (1, 1)
  # equal vs both_bad on pair 0 is a disagreement; pair 1 agrees.
  assert r['agreement']['pooled']['percent'] == pytest.approx(50.0)
  with PreferenceStore(path) as s:
    assert [v.choice for v in s.effective_votes()] == [
        'equal',
        'both_bad',
        'both_bad',
        'both_bad',
    ]
  rows = [
      json.loads(line)
      for line in c.get('/export.jsonl').data.decode().splitlines()
  ]
  assert sorted(row['choice'] for row in rows if row['type'] == 'vote') == [
      'both_bad',
      'both_bad',
      'both_bad',
      'equal',
  ]
  page = c.get('/results')
  assert page.status_code == 200 and b'Both bad' in page.data


def test_export_jsonl(env):
  _, _, _, factory = env
  c = factory()
  vote(c, 'inspector-1', next_pair(c, 'inspector-1'), 'equal')
  r = c.get('/export.jsonl')
  assert (
      r.status_code == 200 and 'attachment' in r.headers['Content-Disposition']
  )
  rows = [json.loads(line) for line in r.data.decode().splitlines()]
  assert any(
      'equal' in json.dumps(row) and 'inspector-1' in json.dumps(row)
      for row in rows
  )


def test_pages_render(env):
  c = env[3](jh_png=lambda *a: tiny_png())
  page = c.get('/')
  assert page.status_code == 200 and b'jh-toggle' in page.data
  assert b'data-choice="both_bad"' in page.data  # the "Both bad" button
  assert c.get('/static/app.js').status_code == 200
  assert c.get('/healthz').json == {'ok': True}
