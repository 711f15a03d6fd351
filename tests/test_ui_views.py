"""Turning the pair in the preference app (Flask test client, no JAX): the
views a pair is handed out with, the image routes per view, the view a vote
is stored with, and the results page per view."""

import io

import numpy as np
from PIL import Image
import pytest
from test_ui_http import create_app, make_store, next_pair, SCENE

from rlhf_tf.preferences.store import PreferenceStore
from rlhf_tf.ui.app_state import View

VIEWS = [View(10.0 + 90.0 * k, f'key-az{10 + 90 * k}') for k in range(4)]


def png(*values) -> bytes:
  buf = io.BytesIO()
  Image.new('RGB', (4, 4), tuple(v % 256 for v in values)).save(buf, 'PNG')
  return buf.getvalue()


def pixel(data: bytes):
  return tuple(np.asarray(Image.open(io.BytesIO(data)))[0, 0])


@pytest.fixture
def turning(tmp_path):
  path = make_store(tmp_path / 'p.sqlite')
  calls = []

  def render(scene_id, action_id, view):
    calls.append((scene_id, action_id, view))
    return png(action_id, view, 0)

  presets = [('Slicer: mine', lambda scene_id, view: png(200, view, 1))]
  app = create_app(path, render, views=VIEWS, presets=presets)
  return path, calls, app.test_client()


def cast(client, pair, choice, view=None, vote_id='vote-0001', status=200):
  body = dict(
      inspector='inspector-1',
      scene_id=pair['scene_id'],
      pair_id=pair['pair_id'],
      left_action=pair['left_action'],
      right_action=pair['right_action'],
      choice=choice,
      lease=pair['lease'],
      vote_id=vote_id,
  )
  if view is not None:
    body['view'] = view
  r = client.post('/api/vote', json=body)
  assert r.status_code == status, r.json
  return r.json


def test_pair_is_handed_out_with_every_view(turning):
  _, _, c = turning
  pair = next_pair(c, 'inspector-1')
  l, r = pair['left_action'], pair['right_action']
  assert [v['azimuth'] for v in pair['views']] == [10.0, 100.0, 190.0, 280.0]
  assert pair['views'][0]['left_url'] == pair['left_url']
  assert pair['left_url'] == f'/render/{SCENE}/{l}.png'
  assert pair['views'][2] == dict(
      azimuth=190.0,
      left_url=f'/render/{SCENE}/{l}.png?view=2',
      right_url=f'/render/{SCENE}/{r}.png?view=2',
  )
  page = c.get('/').data.decode()
  assert 'data-views="4"' in page and 'id="turn"' in page


def test_each_view_renders_once_and_differs(turning):
  path, calls, c = turning
  for view in (0, 3, 3, 0):
    url = f'/render/{SCENE}/2.png' + (f'?view={view}' if view else '')
    r = c.get(url)
    assert r.status_code == 200 and r.mimetype == 'image/png'
    assert pixel(r.data) == (2, view, 0)
  assert calls == [(SCENE, 2, 0), (SCENE, 2, 3)]  # cached per view
  with PreferenceStore(path) as s:  # under each view's own render key
    assert s.render_path(SCENE, 2, 'key-az280') is not None
    assert s.render_path(SCENE, 2, 'key-az10') is not None
  for bad in ('4', '-1', 'x', '99999999999999999999999', '²', '1.0'):
    r = c.get(f'/render/{SCENE}/2.png?view={bad}')
    assert r.status_code == 404 and 'unknown view' in r.json['error']
  assert c.get(f'/render/{SCENE}/2.png?view=').status_code == 404


def test_preset_turns_with_the_pair(turning):
  _, _, c = turning
  for view in (0, 1):
    r = c.get(f'/preset/{SCENE}/0.png?view={view}')
    assert r.status_code == 200 and pixel(r.data) == (200, view, 1)
  assert c.get(f'/preset/{SCENE}/0.png?view=4').status_code == 404


def test_vote_stores_the_view_it_was_cast_at(turning):
  path, _, c = turning
  pair = next_pair(c, 'inspector-1')
  cast(c, pair, 'left', view=7, status=400)  # only views 0..3
  cast(c, pair, 'left', view=True, status=400)
  cast(c, pair, 'left', view='2', status=400)
  first = cast(c, pair, 'right', view=2)
  # A retry (same vote_id) is the same vote; another view is another vote.
  assert cast(c, pair, 'right', view=2)['event_id'] == first['event_id']
  assert 'already used' in cast(c, pair, 'right', view=1, status=409)['error']
  second = next_pair(c, 'inspector-1')
  cast(c, second, 'equal', vote_id='vote-0002')  # no view: view 0
  with PreferenceStore(path) as s:
    votes = s.effective_votes()
  assert [(v.choice, v.view_azimuth, v.render_key) for v in votes] == [
      ('right', 190.0, 'key-az190'),
      ('equal', 10.0, 'key-az10'),
  ]
  results = c.get('/api/results').json
  assert results['by_view'] == [
      dict(azimuth=10.0, votes=1, ties=1, tie_rate=1.0),
      dict(azimuth=190.0, votes=1, ties=0, tie_rate=0.0),
  ]
  # One of inspector-1's two votes was cast away from the first view.
  assert [(i['inspector'], i['turned']) for i in results['inspectors']] == [
      ('inspector-1', 1)
  ]
  page = c.get('/results').data.decode()
  assert 'id="views"' in page and '190°' in page and '>Turned</th>' in page
  export = c.get('/export.jsonl').data.decode()
  assert '"view_azimuth": 190.0' in export


def test_one_view_is_todays_page(tmp_path):
  """Without views: no turn control, 2-argument callbacks, votes store the
  render key but no azimuth, and the results page has no view table."""
  path = make_store(tmp_path / 'p.sqlite')
  c = create_app(path, lambda s, a: png(a), render_key='today').test_client()
  assert 'id="turn"' not in c.get('/').data.decode()
  pair = next_pair(c, 'inspector-1')
  assert len(pair['views']) == 1 and pair['views'][0]['azimuth'] is None
  assert c.get(pair['left_url']).status_code == 200
  assert c.get(pair['left_url'] + '?view=1').status_code == 404
  cast(c, pair, 'left', view=1, status=400)
  cast(c, pair, 'left', view=0)
  with PreferenceStore(path) as s:
    (v,) = s.effective_votes()
  assert (v.view_azimuth, v.render_key) == (None, 'today')
  page = c.get('/results').data.decode()
  assert 'id="views"' not in page and 'Turned' not in page


def test_views_need_distinct_keys(tmp_path):
  path = make_store(tmp_path / 'p.sqlite')
  with pytest.raises(ValueError, match='distinct render keys'):
    create_app(path, lambda s, a, v: png(a), views=[View(0, 'k'), View(1, 'k')])
