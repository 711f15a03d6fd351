"""The browser preference interface: a Flask app over a ``PreferenceStore``.

  keys = auth.keys_for_store(store_path, ['inspector-1', 'inspector-2'])
  app = create_app(store_path, render_png, keys, scene_ids=['phantom-0'])
  serve(app, host='127.0.0.1', port=8765)   # waitress, threads
  keys.link('http://127.0.0.1:8765', 'inspector-1')  # a personal link

The app is this factory, its error handling and its server; the routes are
blueprints, one module per idea, over the state of ``app_state.AppState``:

  sign_in       GET  /login?key=..., /logout: who is voting (``auth``)
  page_routes   GET  /, /results, /api/results, /export.jsonl, /healthz
  vote_routes   POST /api/next, /api/vote, /api/undo: leases, votes, undos
  image_routes  GET  /render/<scene>/<action>.png, /jh/<scene>/<l>/<r>.png,
                     /preset/<scene>/<index>.png (``?view=k``)

All JSON errors are ``{"error": message}`` with a 4xx/5xx status (a refused
request raises ``api_input.ApiError``); ids beyond 2^63 - 1 are 400/404, and
a 500 never shows exception text.

Turning the pair (``views``: e.g. 12 azimuths of the orbit camera, wired by
jobs/collect.py): the page shows both renderings at the same view, always,
and turns them together (keys , and . or a horizontal drag); a turn shows
once both sides (and a shown preset) of the new view have loaded, so the two
sides never show different views. The page preloads the other views of the
pair, nearest first. The arrow keys stay the vote keys (left / right / down
= equal).
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

from absl import logging
import flask
from werkzeug import exceptions

from rlhf_tf.ui import (
    app_state,
    auth,
    image_routes,
    page_routes,
    sign_in,
    vote_routes,
)
from rlhf_tf.ui.api_input import ApiError

LOOPBACK = ('127.0.0.1', 'localhost', '::1')


def _register_error_handlers(app: flask.Flask):
  """Every refusal and failure becomes a JSON error."""

  @app.errorhandler(ApiError)
  def _api_error(e):
    return dict(error=e.message), e.status

  @app.errorhandler(exceptions.HTTPException)
  def _http_error(e):
    return dict(error=e.description or e.name), e.code

  @app.errorhandler(Exception)
  def _crash(e):
    # The details go to the server log only: exception text can leak paths,
    # SQL or data to a client.
    logging.exception('request failed: %s', e)
    return dict(error='internal error (details are in the server log)'), 500


def create_app(
    store_path,
    render_png: Callable[[str, int], bytes],
    keys: auth.InspectorKeys,
    scene_ids: Optional[Sequence[str]] = None,
    render_key: str = 'default',
    jh_png: Optional[Callable[[str, int, int], bytes]] = None,
    votes_target: int = 200,
    lease_seconds: float = 120.0,
    overlap: float = 0.0,
    seed: int = 0,
    selection: str = 'random',
    ensemble_rewards: Optional[Callable] = None,
    clock: Callable[[], float] = time.time,
    presets: Sequence[tuple[str, Callable[[str], bytes]]] = (),
    views: Sequence[app_state.View] = (),
) -> flask.Flask:
  """The Flask app (see the module docstring).

  Args:
    store_path: the preference store (SQLite file); it must hold the scenes.
    render_png: (scene_id, action_id) -> PNG bytes, called once per action
      and render_key; the bytes are cached in the store's image cache.
    keys: the inspectors and the study secret (``auth.keys_for_store``).
    scene_ids: scenes whose pairs are handed out (default: all in the store).
    render_key: names the render settings (a new key = new renderings).
    jh_png: (scene_id, left_action, right_action) -> PNG of the JH with both
      polygons (left, right), or None to hide the JH toggle.
    votes_target: votes per inspector the progress bar counts towards.
    lease_seconds, overlap, seed, selection, ensemble_rewards: pair handout,
      see ``rlhf_tf.ui.pairs``. clock: unix seconds (injectable for tests).
    presets: (name, scene_id -> PNG bytes) of reference presets the page
      offers beside the pair (``image_routes``); () hides the choice.
    views: the views the page turns the pair through (``app_state.View``:
      azimuth in degrees, render key), view 0 shown first. Given, they
      replace render_key, and the callbacks take the view index as a last
      argument: render_png(scene_id, action_id, view), preset(scene_id,
      view). () means one view under render_key, callbacks without a view
      argument.
  """
  state = app_state.AppState(
      store_path,
      render_png,
      keys,
      scene_ids,
      render_key,
      jh_png,
      votes_target,
      dict(
          lease_seconds=lease_seconds,
          overlap=overlap,
          seed=seed,
          selection=selection,
          ensemble_rewards=ensemble_rewards,
          clock=clock,
      ),
      presets,
      views,
  )
  app = flask.Flask(__name__)
  app.config['MAX_CONTENT_LENGTH'] = 64 * 1024  # votes are tiny
  app.secret_key = keys.secret  # signs the session cookie (itsdangerous)
  app.config.update(
      SESSION_COOKIE_NAME='rlhf_tf_session',
      SESSION_COOKIE_HTTPONLY=True,
      SESSION_COOKIE_SAMESITE='Strict',
  )
  app.json.sort_keys = False
  app.extensions[app_state.EXTENSION] = state
  for routes in (page_routes, sign_in, vote_routes, image_routes):
    app.register_blueprint(routes.blueprint)
  _register_error_handlers(app)
  return app


def check_bind(app: flask.Flask, host: str) -> None:
  """Refuses to listen beyond this machine for an app without inspector
  keys (anyone reaching it could vote as anyone)."""
  state = app.extensions.get(app_state.EXTENSION)
  if host not in LOOPBACK and (state is None or not state.keys.inspectors):
    raise ValueError(
        f'refusing to serve on {host!r} without inspector keys: '
        f'bind to 127.0.0.1, or give every inspector a link'
    )


def serve(
    app: flask.Flask,
    host: str = '127.0.0.1',
    port: int = 8765,
    threads: int = 8,
):
  """Serve with waitress (production WSGI, thread pool) until interrupted."""
  import waitress  # pylint: disable=g-import-not-at-top

  check_bind(app, host)
  print(
      f'rlhf_tf preference UI: http://{host}:{port}/  (results: '
      f'http://{host}:{port}/results)',
      flush=True,
  )
  waitress.serve(app, host=host, port=port, threads=threads, ident='rlhf_tf-ui')
