"""Serving the preference page: pre-rendering, inspectors' links, timed runs.

The collect job (rlhf_tf/jobs/collect.py) builds the app (rlhf_tf.ui.app)
and calls these: ``prerender`` fills the store's image cache in a background
thread so inspectors rarely wait, ``print_links`` prints each inspector's
personal sign-in link, ``serve_for`` serves for a fixed time (smoke runs,
demos).
"""

from __future__ import annotations

import threading

from absl import logging

from rlhf_tf.preferences import store as store_lib
from rlhf_tf.ui import app as app_lib
from rlhf_tf.ui import app_state, auth, scene_views


def print_links(keys: auth.InspectorKeys, host: str, port: int) -> None:
  """Each inspector's personal link (send it to them, and only them)."""
  print(
      'personal links (each signs one inspector in; keep them private):',
      flush=True,
  )
  for name in keys.inspectors:
    print(f'  {name}: {keys.link(f"http://{host}:{port}", name)}', flush=True)


def serve_for(app, config, seconds: float, keys=None) -> None:
  """Serve for a fixed time, then stop (smoke runs, demos)."""
  import waitress  # pylint: disable=g-import-not-at-top

  app_lib.check_bind(app, config.host)
  server = waitress.create_server(
      app, host=config.host, port=config.port, threads=config.threads
  )
  if keys is not None:
    print_links(keys, config.host, server.effective_port)
  print(
      f'rlhf_tf preference UI: http://{config.host}:{server.effective_port}/'
      f' for {seconds:g} s',
      flush=True,
  )
  timer = threading.Timer(seconds, server.close)
  timer.start()
  try:
    server.run()
  except (OSError, ValueError):  # The listening socket closed under run().
    pass
  finally:
    timer.cancel()


def prerender(path: str, scenes, stop: threading.Event):
  """Fill the image cache for every action of every scene at every view
  (background: renders a browser waits for go first), view 0 of every
  scene first, then each scene's other views nearest first (scenes: a
  page_scenes.Scenes: scene_ids, render_png, render_key, views)."""
  store = store_lib.PreferenceStore(path)
  views = scenes.views or (app_state.View(None, scenes.render_key),)
  order = [(s, 0) for s in scenes.scene_ids] + [
      (s, k)
      for s in scenes.scene_ids
      for k in scene_views.nearest_first(len(views))
  ]
  try:
    for scene_id, view in order:
      key = views[view].render_key
      for action in store.actions(scene_id):
        if stop.is_set():
          return
        if store.render_path(scene_id, action.action_id, key) is None:
          store.add_render(
              scene_id,
              action.action_id,
              key,
              scenes.render_png(
                  scene_id, action.action_id, view, background=True
              ),
          )
      logging.info(
          'prerender: all actions of %s cached at view %d', scene_id, view
      )
  except Exception:  # pylint: disable=broad-except
    logging.exception('prerender stopped; renders continue on demand')
  finally:
    store.close()
