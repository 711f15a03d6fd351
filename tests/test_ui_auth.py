"""Inspectors who cannot be impersonated (issue 16): forged inspectors, a
foreign lease, an unleased pair, double votes, a forged undo and huge ids are
each refused with the right status, and nothing reaches the store."""

import flask
import pytest
from test_ui_http import make_store, SCENE, tiny_png

from rlhf_tf.preferences.store import PreferenceStore
from rlhf_tf.ui import app as app_lib
from rlhf_tf.ui import auth

KEYS = auth.InspectorKeys(
    b'another-test-secret-42', ['inspector-1', 'inspector-2']
)


def bearer(name):
  return {'Authorization': f'Bearer {KEYS.token(name)}'}


@pytest.fixture
def ui(tmp_path):
  path = make_store(tmp_path / 'p.sqlite')
  app = app_lib.create_app(
      path, lambda s, a: tiny_png(a), KEYS, jh_png=lambda *a: tiny_png()
  )
  return path, app.test_client()


def next_pair(client, name):
  r = client.post('/api/next', json={}, headers=bearer(name))
  assert r.status_code == 200, r.json
  return r.json['pair']


def vote_body(pair, choice='left', vote_id='vote-id-0001', **changes):
  body = dict(
      scene_id=pair['scene_id'],
      pair_id=pair['pair_id'],
      left_action=pair['left_action'],
      right_action=pair['right_action'],
      choice=choice,
      vote_id=vote_id,
      lease=pair['lease'],
  )
  body.update(changes)
  return body


def events(path):
  with PreferenceStore(path) as s:
    return s.vote_counts()['events']


@pytest.mark.parametrize('route', ['/api/next', '/api/vote', '/api/undo'])
def test_every_write_needs_a_signed_in_inspector(ui, route):
  path, c = ui
  for headers in (
      {},
      {'Authorization': 'Bearer not-a-token'},
      {'Authorization': 'Bearer ' + KEYS.token('inspector-1')[:-2]},
  ):
    r = c.post(route, json={'inspector': 'inspector-1'}, headers=headers)
    assert r.status_code == 401 and 'personal link' in r.json['error']
  assert events(path) == 0


def test_forged_inspector_in_the_body(ui):
  path, c = ui
  r = c.post(
      '/api/next',
      json={'inspector': 'inspector-1'},
      headers=bearer('inspector-2'),
  )
  assert r.status_code == 403
  assert "signed in as 'inspector-2'" in r.json['error']
  pair = next_pair(c, 'inspector-2')
  r = c.post(
      '/api/vote',
      json=vote_body(pair, inspector='inspector-1'),
      headers=bearer('inspector-2'),
  )
  assert r.status_code == 403
  assert events(path) == 0


def test_vote_on_a_pair_leased_to_another_inspector(ui):
  path, c = ui
  anns = next_pair(c, 'inspector-1')
  r = c.post('/api/vote', json=vote_body(anns), headers=bearer('inspector-2'))
  assert r.status_code == 403 and 'another inspector' in r.json['error']
  assert events(path) == 0
  r = c.post('/api/vote', json=vote_body(anns), headers=bearer('inspector-1'))
  assert r.status_code == 200  # the lease holder may


def test_vote_on_a_pair_never_leased(ui):
  path, c = ui
  pair = next_pair(c, 'inspector-1')
  other = 1 if pair['pair_id'] != 1 else 2
  with PreferenceStore(path) as s:
    a, b = s.pairs(SCENE)[other][2:]
  for lease in (None, '', 'x' * 3000, pair['lease']):
    r = c.post(
        '/api/vote',
        json=vote_body(
            pair, pair_id=other, left_action=a, right_action=b, lease=lease
        ),
        headers=bearer('inspector-1'),
    )
    assert r.status_code == 409, r.json
  assert events(path) == 0


def test_a_lease_signed_with_another_secret_is_refused(ui):
  path, c = ui
  pair = next_pair(c, 'inspector-1')
  other = auth.InspectorKeys(b'not-the-study-secret!', ['inspector-1'])
  forged = other.sign_lease(
      auth.SignedLease(
          'inspector-1',
          SCENE,
          pair['pair_id'],
          pair['left_action'],
          pair['right_action'],
          pair['shown_at'],
      )
  )
  r = c.post(
      '/api/vote',
      json=vote_body(pair, lease=forged),
      headers=bearer('inspector-1'),
  )
  assert r.status_code == 409 and events(path) == 0


def test_a_lease_token_is_its_lease_and_ages_on_the_server_clock():
  # No signing time of its own: the same lease signs to the same token
  # whenever it is signed, and its age is now - shown_at on the server's
  # clock (an injected one in tests), up to max_age_s (and a minute back).
  import time

  lease = auth.SignedLease('inspector-1', SCENE, 3, 0, 1, 1000.0)
  token = KEYS.sign_lease(lease)
  time.sleep(1.1)  # itsdangerous' timed tokens change with the second
  assert KEYS.sign_lease(lease) == token
  assert KEYS.lease_of(token, 60.0, now=1000.0) == lease
  assert KEYS.lease_of(token, 60.0, now=1060.0) == lease
  assert KEYS.lease_of(token, 60.0, now=1060.5) is None
  assert KEYS.lease_of(token, 60.0, now=950.0) == lease  # clock stepped back
  assert KEYS.lease_of(token, 60.0, now=939.0) is None
  assert KEYS.lease_of(token[:-2] + 'xx', 60.0, now=1000.0) is None


def test_double_vote_is_refused_until_undone(ui):
  path, c = ui
  pair = next_pair(c, 'inspector-1')
  first = c.post(
      '/api/vote',
      json=vote_body(pair, 'left', 'first-vote-1'),
      headers=bearer('inspector-1'),
  )
  assert first.status_code == 200
  again = c.post(
      '/api/vote',
      json=vote_body(pair, 'right', 'other-vote-2'),
      headers=bearer('inspector-1'),
  )
  assert again.status_code == 409 and 'already answered' in again.json['error']
  with PreferenceStore(path) as s:
    assert [v.choice for v in s.effective_votes()] == ['left']
  undo = c.post(
      '/api/undo',
      json={'vote_id': 'first-vote-1'},
      headers=bearer('inspector-1'),
  )
  assert undo.status_code == 200
  redo = c.post(
      '/api/vote',
      json=vote_body(undo.json['pair'], 'right', 'third-vote-3'),
      headers=bearer('inspector-1'),
  )
  assert redo.status_code == 200
  with PreferenceStore(path) as s:
    assert [v.choice for v in s.effective_votes()] == ['right']


def test_forged_undo_cannot_withdraw_another_inspectors_vote(ui):
  path, c = ui
  pair = next_pair(c, 'inspector-1')
  assert (
      c.post(
          '/api/vote', json=vote_body(pair), headers=bearer('inspector-1')
      ).status_code
      == 200
  )
  for headers in ({}, bearer('inspector-2')):
    r = c.post('/api/undo', json={'inspector': 'inspector-1'}, headers=headers)
    assert r.status_code in (401, 403)
  # inspector-2's own votes: none.
  r = c.post('/api/undo', json={}, headers=bearer('inspector-2'))
  assert r.status_code == 409
  with PreferenceStore(path) as s:
    assert len(s.effective_votes(inspector='inspector-1')) == 1


@pytest.mark.parametrize(
    'change',
    [dict(pair_id=2**70), dict(left_action=2**70), dict(right_action=-(2**70))],
)
def test_huge_ids_in_the_body_are_400(ui, change):
  path, c = ui
  r = c.post(
      '/api/vote',
      json=vote_body(next_pair(c, 'inspector-1'), **change),
      headers=bearer('inspector-1'),
  )
  assert r.status_code == 400 and 'Traceback' not in r.get_data(as_text=True)
  assert events(path) == 0


@pytest.mark.parametrize(
    'url',
    [
        f'/render/{SCENE}/{2**70}.png',
        f'/render/{SCENE}/{10**40}.png',
        f'/jh/{SCENE}/{2**64}/1.png',
    ],
)
def test_huge_ids_in_urls_are_404(ui, url):
  r = ui[1].get(url)
  assert r.status_code == 404
  assert 'Overflow' not in r.get_data(as_text=True)


def test_personal_link_signs_in_with_a_session_cookie(ui):
  path, c = ui
  assert c.get('/login?key=nonsense').status_code == 403
  r = c.get('/login?key=' + KEYS.token('inspector-2'))
  assert r.status_code == 302 and r.headers['Location'].endswith('/')
  cookie = r.headers['Set-Cookie']
  assert 'HttpOnly' in cookie and 'SameSite=Strict' in cookie
  page = c.get('/').get_data(as_text=True)
  assert 'data-inspector="inspector-2"' in page
  pair = c.post('/api/next', json={}).json['pair']  # the cookie suffices
  assert c.post('/api/vote', json=vote_body(pair)).status_code == 200
  with PreferenceStore(path) as s:
    assert [v.inspector for v in s.effective_votes()] == ['inspector-2']
  c.get('/logout')
  assert c.post('/api/next', json={}).status_code == 401


def test_taking_a_name_off_the_roster_revokes_its_link(tmp_path):
  path = make_store(tmp_path / 'p.sqlite')
  secret = auth.load_or_create_secret(tmp_path / auth.SECRET_FILE)
  assert auth.load_or_create_secret(tmp_path / auth.SECRET_FILE) == secret
  assert (tmp_path / auth.SECRET_FILE).stat().st_mode & 0o777 == 0o600
  before = auth.InspectorKeys(secret, ['inspector-1', 'inspector-2'])
  after = auth.InspectorKeys(secret, ['inspector-1'])
  c = app_lib.create_app(path, lambda s, a: tiny_png(), after).test_client()
  r = c.post(
      '/api/next',
      json={},
      headers={'Authorization': 'Bearer ' + before.token('inspector-2')},
  )
  assert r.status_code == 401
  r = c.post(
      '/api/next',
      json={},
      headers={'Authorization': 'Bearer ' + before.token('inspector-1')},
  )
  assert r.status_code == 200  # the same secret: inspector-1's link still works


def test_roster_and_bind_checks():
  with pytest.raises(ValueError, match='inspectors'):
    auth.parse_roster('')
  with pytest.raises(ValueError, match='twice'):
    auth.parse_roster('inspector-1, inspector-2, inspector-1')
  with pytest.raises(ValueError, match='printable'):
    auth.parse_roster(['a\nb'])
  assert auth.parse_roster('inspector-1, inspector-2') == (
      'inspector-1',
      'inspector-2',
  )
  with pytest.raises(ValueError, match='0.0.0.0'):
    app_lib.check_bind(flask.Flask('plain'), '0.0.0.0')
  app_lib.check_bind(flask.Flask('plain'), '127.0.0.1')
