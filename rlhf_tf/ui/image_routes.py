"""The images the voting page shows, rendered on first request and cached.

  GET  /render/<scene>/<action>.png[?view=k]  the rendering (render_png,
                                  cached in the store), at view k (default 0)
  GET  /jh/<scene>/<left>/<right>.png the JH with both polygons (jh_png)
  GET  /preset/<scene>/<index>.png[?view=k]   a reference preset's rendering

Renderings go to the store's image cache, so a restarted app serves them
again without rendering; JH images (an LRU of ``JH_CACHE_SIZE``) and preset
renderings (few) live in memory.

Reference presets (``presets``: InVesalius .plist, a user's Slicer .vp.json,
wired by jobs/collect.py): an inspector who knows the presets of their
viewer can show one of them, rendered on the pair's scene with the same view
and lighting, in a panel beside the pair. It is a reference only: the votes
stay on the pair (the reward model scores polygons, and a preset is a TF
table, not a polygon).
"""

from __future__ import annotations

from pathlib import Path
import re
from typing import Optional

import flask

from rlhf_tf.ui import app_state
from rlhf_tf.ui.api_input import ApiError, url_id

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
VIEW_ARG = re.compile(r'^[0-9]{1,3}$')
JH_CACHE_SIZE = 512

blueprint = flask.Blueprint('images', __name__)


def view_arg(state: app_state.AppState) -> int:
  """The ?view= of an image URL (default 0, the first view), or 404."""
  text = flask.request.args.get('view', '0')
  if not VIEW_ARG.match(text) or int(text) >= len(state.views):
    raise ApiError(
        404, f'unknown view {text[:20]!r} (this app has {len(state.views)})'
    )
  return int(text)


def inside_cache(state: app_state.AppState, path: Optional[Path]) -> Path:
  """A cached file, resolved and checked to lie inside the image cache."""
  root = state.store().images_dir.resolve()
  if path is None:
    raise ApiError(404, 'not rendered')
  path = path.resolve()
  if not path.is_relative_to(root) or not path.is_file():
    raise ApiError(404, 'image not found in the cache')
  return path


def png_response(png: bytes) -> flask.Response:
  """PNG bytes made in memory, cacheable by the browser for an hour."""
  response = flask.make_response(png)
  response.headers['Content-Type'] = 'image/png'
  response.headers['Cache-Control'] = 'max-age=3600'
  return response


@blueprint.route('/render/<scene_id>/<int:action_id>.png')
def render(scene_id: str, action_id: int):
  state = app_state.current()
  scene_id = state.scene(scene_id)
  action_id = url_id(action_id, f'action in scene {scene_id!r}')
  view = view_arg(state)
  key = state.views[view].render_key
  store = state.store()
  path = store.render_path(scene_id, action_id, key)
  if path is None:
    if not store.conn.execute(
        'SELECT 1 FROM actions WHERE scene_id = ? AND action_id = ?',
        (scene_id, action_id),
    ).fetchone():
      raise ApiError(
          404, f'unknown action {action_id} in scene ' f'{scene_id!r}'
      )
    # One render per action and view even when requests arrive at once.
    with state.render_locks[(scene_id, action_id, view)]:
      path = store.render_path(scene_id, action_id, key)
      if path is None:
        png = (
            state.render_png(scene_id, action_id, view)
            if state.turns
            else state.render_png(scene_id, action_id)
        )
        if not isinstance(png, bytes) or not png.startswith(PNG_MAGIC):
          raise ApiError(500, 'the renderer did not return PNG bytes')
        store.add_render(scene_id, action_id, key, png)
        path = store.render_path(scene_id, action_id, key)
  return flask.send_file(
      inside_cache(state, path), mimetype='image/png', max_age=3600
  )


@blueprint.route('/jh/<scene_id>/<int:left>/<int:right>.png')
def jh(scene_id: str, left: int, right: int):
  state = app_state.current()
  scene_id = state.scene(scene_id)
  left, right = url_id(left, 'action'), url_id(right, 'action')
  if state.jh_png is None:
    raise ApiError(404, 'this app has no joint-histogram view')
  if state.store().pair_id(scene_id, left, right) is None or left == right:
    raise ApiError(
        404, f'({left}, {right}) is not a pair of scene ' f'{scene_id!r}'
    )
  key = (scene_id, left, right)
  with state.jh_lock:
    png = state.jh_cache.get(key)
    if png is not None:
      state.jh_cache.move_to_end(key)
  if png is None:
    png = state.jh_png(scene_id, left, right)
    with state.jh_lock:
      state.jh_cache[key] = png
      while len(state.jh_cache) > JH_CACHE_SIZE:
        state.jh_cache.popitem(last=False)
  return png_response(png)


@blueprint.route('/preset/<scene_id>/<int:index>.png')
def preset(scene_id: str, index: int):
  """PNG of reference preset ``index`` on a scene (rendered once)."""
  state = app_state.current()
  scene_id = state.scene(scene_id)
  if index >= len(state.presets):
    raise ApiError(
        404, f'unknown preset {index} (this app has ' f'{len(state.presets)})'
    )
  view = view_arg(state)
  key = (scene_id, index, view)
  with state.render_locks[('preset',) + key]:
    png = state.preset_cache.get(key)
    if png is None:
      fn = state.presets[index][1]
      png = fn(scene_id, view) if state.turns else fn(scene_id)
      if not isinstance(png, bytes) or not png.startswith(PNG_MAGIC):
        raise ApiError(500, 'the preset renderer did not return PNG bytes')
      state.preset_cache[key] = png
  return png_response(png)
