"""Makes docs/ui_screenshot.png: the preference UI on the default phantom.

  .venv/bin/python docs/make_ui_screenshot.py [--out docs/ui_screenshot.png]

The dataset's scene (experiments/collect.py's config, 12 views) in a
temporary store, one neutral inspector id ('inspector-1'), three votes, the
pair turned one view on, the JH shown, then a screenshot of the page in
Debian's /usr/bin/chromium (playwright).
"""

import argparse
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from playwright import sync_api  # noqa: E402
import waitress  # noqa: E402

from rlhf_tf.jobs import (
    collect,  # noqa: E402
    experiment_file,  # noqa: E402
)
from rlhf_tf.preferences import dataset  # noqa: E402
from rlhf_tf.preferences import store as store_lib  # noqa: E402
from rlhf_tf.ui import app as app_lib  # noqa: E402
from rlhf_tf.ui import auth  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSPECTOR = 'inspector-1'


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument(
      '--out', default=os.path.join(ROOT, 'docs', 'ui_screenshot.png')
  )
  args = parser.parse_args()
  config = experiment_file.load_config(
      os.path.join(ROOT, 'experiments', 'collect.py')
  )
  workdir = tempfile.mkdtemp(prefix='ui_screenshot_')
  path = dataset.store_path(config, workdir)
  store = store_lib.PreferenceStore(path)
  scenes = collect.dataset_scenes(config, store)
  store.close()
  keys = auth.keys_for_store(path, [INSPECTOR])
  app = app_lib.create_app(
      path,
      scenes.render_png,
      keys,
      scene_ids=list(scenes.scene_ids),
      jh_png=scenes.jh_png,
      votes_target=config.votes_target,
      presets=scenes.presets,
      views=scenes.views,
  )
  server = waitress.create_server(app, host='127.0.0.1', port=0, threads=4)
  threading.Thread(target=server.run, daemon=True).start()
  url = f'http://127.0.0.1:{server.effective_port}'
  with sync_api.sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path='/usr/bin/chromium',
        args=['--no-sandbox', '--disable-gpu'],
    )
    page = browser.new_page(viewport=dict(width=1280, height=800))
    page.goto(keys.link(url, INSPECTOR))
    for key in ('ArrowLeft', 'ArrowDown', 'ArrowRight'):
      page.wait_for_selector('#stage[data-ready="1"]', timeout=600_000)
      page.keyboard.press(key)
    page.wait_for_selector('#stage[data-ready="1"]', timeout=600_000)
    page.wait_for_function(
        "document.getElementById('progress-text').textContent"
        ".startsWith('3 /')",
        timeout=60_000,
    )
    page.keyboard.press(',')  # turn the pair one view on (30 degrees)
    page.wait_for_selector('#turn[data-view="1"]', timeout=600_000)
    # Every view loaded: no render is left running when the server stops.
    page.wait_for_selector(
        f'#turn[data-loaded="{len(scenes.views)}"]', timeout=1_200_000
    )
    page.check('#jh-toggle')
    page.wait_for_function(
        "document.getElementById('jh-img').complete && "
        "document.getElementById('jh-img').naturalWidth > 0",
        timeout=600_000,
    )
    page.wait_for_timeout(500)
    page.screenshot(path=args.out)
    browser.close()
  server.close()
  print(args.out)


if __name__ == '__main__':
  main()
