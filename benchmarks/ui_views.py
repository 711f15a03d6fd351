"""Benchmark: how long an inspector waits for a pair and its turntable views.

The collect job's real path (experiments/collect.py's config: the default
phantom, 256^2, --azimuths views), through the Flask app's routes in this
process (no browser, no network; a fresh store, no prerendering):

- scene_s: the scene's JH, experts and view-0 ray cache (collect start-up).
- first_pair_s: /api/next, then both view-0 images (the pair appears).
- views_s: the other views of that pair, both sides, in the page's preload
  order (nearest first); per view (view_s: a new ray cache, compilation for
  its shapes, two renders) and in all: the time until the pair can be
  turned all the way round.
- next_pair_views_s: a second pair of the scene, every view (the views'
  caches are built: renders only, unless --view-caches evicted them).

The machine is shared today: the load average (1 min) before and after is
printed with the figures; time_to_* grow with it.

  .venv/bin/python benchmarks/ui_views.py [--azimuths 12] [--image-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from rlhf_tf.jobs import collect, experiment_file  # noqa: E402
from rlhf_tf.preferences import dataset  # noqa: E402
from rlhf_tf.preferences import store as store_lib  # noqa: E402
from rlhf_tf.ui import app as app_lib  # noqa: E402
from rlhf_tf.ui import (
    auth,  # noqa: E402
    scene_views,  # noqa: E402
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get(client, url, headers):
  r = client.get(url, headers=headers)
  if r.status_code != 200:
    raise RuntimeError(f'{url}: {r.status_code} {r.data[:200]!r}')


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--azimuths', type=int, default=12)
  ap.add_argument('--view-caches', type=int, default=12)
  ap.add_argument('--image-size', type=int, default=256)
  args = ap.parse_args()
  load_before = os.getloadavg()[0]
  config = experiment_file.load_config(
      os.path.join(ROOT, 'experiments', 'collect.py')
  )
  config.ui.azimuths = args.azimuths
  config.ui.view_caches = args.view_caches
  config.render.image_size = args.image_size
  config.reference_presets.enabled = False
  workdir = tempfile.mkdtemp(prefix='ui_views_')
  path = dataset.store_path(config, workdir)

  t0 = time.perf_counter()
  store = store_lib.PreferenceStore(path)
  scenes = collect.dataset_scenes(config, store)
  store.close()
  scene_s = time.perf_counter() - t0
  keys = auth.keys_for_store(path, ['bench'])
  app = app_lib.create_app(
      path,
      scenes.render_png,
      keys,
      scene_ids=list(scenes.scene_ids),
      views=scenes.views,
  )
  client = app.test_client()
  headers = {'Authorization': f'Bearer {keys.token("bench")}'}

  def next_pair():
    return client.post('/api/next', json={}, headers=headers).json['pair']

  t = time.perf_counter()
  pair = next_pair()
  for side in ('left', 'right'):
    get(client, pair['views'][0][f'{side}_url'], headers)
  first_pair_s = time.perf_counter() - t

  view_s = {}
  t = time.perf_counter()
  for k in scene_views.nearest_first(args.azimuths):
    tk = time.perf_counter()
    for side in ('left', 'right'):
      get(client, pair['views'][k][f'{side}_url'], headers)
    view_s[k] = round(time.perf_counter() - tk, 3)
  views_s = time.perf_counter() - t

  r = client.post(
      '/api/vote',
      json=dict(
          scene_id=pair['scene_id'],
          pair_id=pair['pair_id'],
          left_action=pair['left_action'],
          right_action=pair['right_action'],
          choice='left',
          lease=pair['lease'],
          vote_id='benchmark-vote-1',
          view=1 % args.azimuths,
      ),
      headers=headers,
  )
  assert r.status_code == 200, r.json
  second = next_pair()
  t = time.perf_counter()
  for k in range(args.azimuths):
    for side in ('left', 'right'):
      get(client, second['views'][k][f'{side}_url'], headers)
  next_pair_views_s = time.perf_counter() - t

  print(
      json.dumps(
          dict(
              azimuths=args.azimuths,
              image_size=args.image_size,
              view_caches=args.view_caches,
              scene_s=round(scene_s, 2),
              first_pair_s=round(first_pair_s, 2),
              time_to_first_pair_s=round(scene_s + first_pair_s, 2),
              views_s=round(views_s, 2),
              time_to_all_views_s=round(scene_s + first_pair_s + views_s, 2),
              view_s=view_s,
              next_pair_views_s=round(next_pair_views_s, 2),
              loadavg_1min_before=round(load_before, 2),
              loadavg_1min_after=round(os.getloadavg()[0], 2),
              cpus=os.cpu_count(),
          ),
          indent=1,
      )
  )


if __name__ == '__main__':
  main()
