"""The voting page in a real headless Chromium (Debian's /usr/bin/chromium,
driven by playwright; never `playwright install`).

Set RLHF_TF_SCREENSHOT=path to keep the screenshot (docs/ui_screenshot.png is
made that way); it always goes to the test's tmp folder too.
"""

import io
import itertools
import os
from pathlib import Path
import shutil
import threading

import numpy as np
import pytest

from rlhf_tf.preferences.store import PreferenceStore
from rlhf_tf.ui import auth
from rlhf_tf.ui.app import create_app

CHROMIUM = '/usr/bin/chromium'
ARGS = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
]

if not os.path.exists(CHROMIUM):
  pytest.skip(
      f'{CHROMIUM} missing (apt-get install -y chromium)',
      allow_module_level=True,
  )
sync_api = pytest.importorskip(
    'playwright.sync_api', reason='pip install playwright'
)
waitress = pytest.importorskip('waitress')


def fake_render(scene_id, action_id) -> bytes:
  """A 256^2 stand-in 'rendering': a shaded disc whose size depends on the
  action, so the two sides look different in the screenshot."""
  from PIL import Image

  yy, xx = np.mgrid[-1:1:256j, -1:1:256j]
  r = np.hypot(xx, yy) / (0.45 + 0.08 * (action_id % 5))
  shade = np.clip(1.0 - r, 0.0, 1.0) ** 0.6
  rgb = np.stack([shade * 0.95, shade * 0.78, shade * 0.62], -1)
  buf = io.BytesIO()
  Image.fromarray((rgb * 255).astype(np.uint8)).save(buf, 'PNG')
  return buf.getvalue()


def fake_jh(scene_id, left, right) -> bytes:
  return fake_render(scene_id, left + right)


@pytest.fixture
def server(tmp_path):
  path = tmp_path / 'p.sqlite'
  with PreferenceStore(path) as s:
    s.add_scene('s0')
    s.add_actions(
        's0',
        [[[0.1 + i / 40, 0.1], [0.6, 0.1], [0.4, 0.7]] for i in range(6)],
        'random',
    )
    s.add_pairs('s0', list(itertools.combinations(range(6), 2)))
  keys = auth.keys_for_store(path, ['inspector-1', 'inspector-2'])
  app = create_app(path, fake_render, keys, jh_png=fake_jh, votes_target=50)
  srv = waitress.create_server(app, host='127.0.0.1', port=0, threads=4)
  thread = threading.Thread(target=srv.run, daemon=True)
  thread.start()
  yield path, f'http://127.0.0.1:{srv.effective_port}', keys
  srv.close()


def test_vote_with_keys_in_chromium(server, tmp_path):
  path, url, keys = server
  with sync_api.sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
      page = browser.new_page(viewport=dict(width=1280, height=800))
      page.goto(url + '/')  # not signed in: the page asks for the link
      assert page.is_visible('#name-dialog')
      assert 'personal link' in page.inner_text('#name-dialog')
      page.goto(keys.link(url, 'inspector-1'))  # signs in, back to /
      assert page.url == url + '/'
      assert page.inner_text('#who-name') == 'inspector-1'
      ready = '#stage[data-ready="1"]'
      for key in ('ArrowLeft', 'ArrowRight', 'ArrowDown', 'b'):
        page.wait_for_selector(ready, timeout=10_000)
        page.keyboard.press(key)
      page.wait_for_selector(ready, timeout=10_000)
      page.click('button[data-choice="both_bad"]')  # the button, too
      page.wait_for_selector(ready, timeout=10_000)
      page.wait_for_function(
          "document.getElementById('progress-text').textContent"
          ".startsWith('5 /')",
          timeout=10_000,
      )
      assert 'saved: both bad' in page.inner_text('#status')
      # The page fits 1280x800 without scrolling.
      assert page.evaluate('document.documentElement.scrollHeight') <= 800
      assert page.evaluate('document.documentElement.scrollWidth') <= 1280
      page.check('#jh-toggle')
      page.wait_for_function(
          "document.getElementById('jh-img').complete && "
          "document.getElementById('jh-img').naturalWidth > 0"
      )
      shot = tmp_path / 'ui.png'
      page.screenshot(path=str(shot))
      # The session cookie is out of the page script's reach (HttpOnly).
      assert 'rlhf_tf_session' not in page.evaluate('document.cookie')
    finally:
      browser.close()
  if os.environ.get('RLHF_TF_SCREENSHOT'):
    target = Path(os.environ['RLHF_TF_SCREENSHOT'])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, target)
  with PreferenceStore(path) as s:
    votes = s.effective_votes()
  assert [(v.inspector, v.choice) for v in votes] == [
      ('inspector-1', 'left'),
      ('inspector-1', 'right'),
      ('inspector-1', 'equal'),
      ('inspector-1', 'both_bad'),
      ('inspector-1', 'both_bad'),
  ]
  assert all(
      v.shown_at is not None and v.answered_at >= v.shown_at for v in votes
  )
  assert len({v.pair_id for v in votes}) == 5


def test_reference_preset_beside_the_pair_in_chromium(tmp_path):
  """A preset (InVesalius / Slicer, wired by jobs/collect.py) chosen on the
  page shows beside the pair, survives the next pair, fits the screen with
  the JH panel, and is never voted on."""
  path = tmp_path / 'p.sqlite'
  with PreferenceStore(path) as s:
    s.add_scene('s0')
    s.add_actions(
        's0',
        [[[0.1 + i / 40, 0.1], [0.6, 0.1], [0.4, 0.7]] for i in range(4)],
        'random',
    )
    s.add_pairs('s0', list(itertools.combinations(range(4), 2)))
  keys = auth.keys_for_store(path, ['inspector-1'])
  presets = [
      ('InVesalius: Bone + Skin', lambda s: fake_render(s, 7)),
      ('Slicer: mine', lambda s: fake_render(s, 9)),
  ]
  app = create_app(path, fake_render, keys, jh_png=fake_jh, presets=presets)
  srv = waitress.create_server(app, host='127.0.0.1', port=0, threads=4)
  threading.Thread(target=srv.run, daemon=True).start()
  url = f'http://127.0.0.1:{srv.effective_port}'
  loaded = (
      "document.getElementById('preset-img').complete && "
      "document.getElementById('preset-img').naturalWidth > 0"
  )
  try:
    with sync_api.sync_playwright() as p:
      browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
      try:
        page = browser.new_page(viewport=dict(width=1280, height=800))
        page.goto(keys.link(url, 'inspector-1'))
        page.wait_for_selector('#stage[data-ready="1"]', timeout=10_000)
        assert not page.is_visible('#preset-panel')
        page.select_option('#preset-select', '1')
        page.wait_for_function(loaded, timeout=10_000)
        assert page.is_visible('#preset-panel')
        assert page.inner_text('#preset-name') == 'Slicer: mine'
        assert page.get_attribute('#preset-img', 'src') == '/preset/s0/1.png'
        page.keyboard.press('ArrowLeft')  # a vote, not a preset change
        page.wait_for_function(
            "document.getElementById('progress-text').textContent"
            ".startsWith('1 /')",
            timeout=10_000,
        )
        assert page.inner_text('#preset-name') == 'Slicer: mine'
        page.keyboard.press('p')  # cycles: Slicer: mine -> none
        assert not page.is_visible('#preset-panel')
        page.keyboard.press('p')  # -> the first preset
        page.wait_for_function(loaded, timeout=10_000)
        assert page.inner_text('#preset-name') == 'InVesalius: Bone + Skin'
        page.check('#jh-toggle')
        page.wait_for_function(
            "document.getElementById('jh-img').complete && "
            "document.getElementById('jh-img').naturalWidth > 0"
        )
        assert page.is_visible('#preset-panel') and page.is_visible('#jh-panel')
        assert page.evaluate('document.documentElement.scrollHeight') <= 800
        assert page.evaluate('document.documentElement.scrollWidth') <= 1280
        for side in ('left', 'right'):  # the pair keeps its size
          box = page.locator(f'#{side}-img').bounding_box()
          assert box['width'] > 300 and box['height'] > 300, box
        page.reload()  # the choice is remembered
        page.wait_for_function(loaded, timeout=10_000)
        assert page.inner_text('#preset-name') == 'InVesalius: Bone + Skin'
        page.screenshot(path=str(tmp_path / 'ui_preset.png'))
      finally:
        browser.close()
  finally:
    srv.close()
  with PreferenceStore(path) as s:
    votes = s.effective_votes()
  assert [(v.inspector, v.choice) for v in votes] == [('inspector-1', 'left')]


def test_turning_the_pair_in_chromium(tmp_path):
  """Keys , and . and a drag turn both sides together; each vote stores the
  view it was cast at; a preset shown beside the pair turns with it."""
  from PIL import Image

  from rlhf_tf.ui.app_state import View

  path = tmp_path / 'p.sqlite'
  with PreferenceStore(path) as s:
    s.add_scene('s0')
    s.add_actions(
        's0',
        [[[0.1 + i / 40, 0.1], [0.6, 0.1], [0.4, 0.7]] for i in range(4)],
        'random',
    )
    s.add_pairs('s0', list(itertools.combinations(range(4), 2)))
  keys = auth.keys_for_store(path, ['inspector-1'])
  views = [View(20.0 + 120.0 * k, f'az{20 + 120 * k}') for k in range(3)]

  def png(red, green):
    buf = io.BytesIO()
    Image.new('RGB', (16, 16), (red, green, 0)).save(buf, 'PNG')
    return buf.getvalue()

  app = create_app(
      path,
      lambda scene_id, action, view: png(40 * action, 100 * view),
      keys,
      views=views,
      presets=[('Slicer: mine', lambda scene_id, view: png(250, 100 * view))],
  )
  srv = waitress.create_server(app, host='127.0.0.1', port=0, threads=4)
  threading.Thread(target=srv.run, daemon=True).start()
  url = f'http://127.0.0.1:{srv.effective_port}'
  ready = '#stage[data-ready="1"]'
  shown = """() => ['left-img', 'right-img', 'preset-img'].map((id) => {
    const img = document.getElementById(id);
    const c = document.createElement('canvas');
    c.width = c.height = 1;
    c.getContext('2d').drawImage(img, 0, 0, 1, 1);
    return Array.from(c.getContext('2d').getImageData(0, 0, 1, 1).data
      .slice(0, 2)); })"""
  try:
    with sync_api.sync_playwright() as p:
      browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
      try:
        page = browser.new_page(viewport=dict(width=1280, height=800))
        page.goto(keys.link(url, 'inspector-1'))
        page.wait_for_selector(ready, timeout=10_000)
        page.select_option('#preset-select', '0')
        page.wait_for_selector('#turn[data-loaded="3"]', timeout=10_000)
        assert page.inner_text('#view-label') == '20°'
        page.keyboard.press(',')  # one view on: 140 degrees
        page.wait_for_selector('#turn[data-view="1"]', timeout=10_000)
        page.wait_for_function(
            "document.getElementById('preset-img').complete", timeout=10_000
        )
        left, right, preset = page.evaluate(shown)
        assert left[1] == right[1] == preset[1] == 100  # all at view 1
        assert left[0] != right[0] and preset[0] == 250
        assert page.inner_text('#view-label') == '140°'
        assert [
            b.inner_text() for b in page.query_selector_all('.view-badge')
        ] == [
            '140°',
            '140°',
        ]
        page.keyboard.press('ArrowLeft')  # a vote at view 1, not a turn
        page.wait_for_function(
            "document.getElementById('progress-text').textContent"
            ".startsWith('1 /')",
            timeout=10_000,
        )
        page.wait_for_selector('#turn[data-view="0"]', timeout=10_000)
        page.wait_for_selector(ready, timeout=10_000)
        page.keyboard.press('.')  # back one view from view 0: view 2
        page.wait_for_selector('#turn[data-view="2"]', timeout=10_000)
        page.keyboard.press('.')
        page.wait_for_selector('#turn[data-view="1"]', timeout=10_000)
        # Dragging the left image 2 steps to the left turns 2 views on.
        box = page.locator('#left-img').bounding_box()
        x, y = box['x'] + box['width'] / 2, box['y'] + box['height'] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 45, y, steps=3)
        page.mouse.move(x - 85, y, steps=3)
        page.mouse.up()
        page.wait_for_selector('#turn[data-view="0"]', timeout=10_000)
        left, right, _ = page.evaluate(shown)
        assert left[1] == right[1] == 0
        page.keyboard.press(',')
        page.wait_for_selector('#turn[data-view="1"]', timeout=10_000)
        page.keyboard.press('ArrowRight')
        page.wait_for_function(
            "document.getElementById('progress-text').textContent"
            ".startsWith('2 /')",
            timeout=10_000,
        )
        assert page.evaluate('document.documentElement.scrollWidth') <= 1280
        page.screenshot(path=str(tmp_path / 'ui_turn.png'))
      finally:
        browser.close()
  finally:
    srv.close()
  with PreferenceStore(path) as s:
    votes = s.effective_votes()
  assert [(v.choice, v.view_azimuth, v.render_key) for v in votes] == [
      ('left', 140.0, 'az140'),
      ('right', 140.0, 'az140'),
  ]
