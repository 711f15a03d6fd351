"""What one preference-UI process serves from: the store, the inspectors'
keys, the scenes and their views, the pair dispenser, and the locks and
caches the routes share.

``app.create_app`` makes one per Flask app and keeps it in
``app.extensions``; the routes find it with ``current()``.

SQLite connections belong to the thread that opened them, so each server
thread opens its own ``PreferenceStore`` on the same file (WAL).
"""

from __future__ import annotations

import collections
from pathlib import Path
import threading
from typing import Callable, NamedTuple, Optional, Sequence

import flask

from rlhf_tf.preferences import store as store_lib
from rlhf_tf.ui import auth
from rlhf_tf.ui import pairs as pairs_lib
from rlhf_tf.ui.api_input import ApiError

MAX_VIEWS = 360
EXTENSION = 'rlhf_tf_ui'  # the key of the state in app.extensions


class View(NamedTuple):
  """One view the pair can be turned to (the same on both sides)."""

  azimuth_deg: Optional[float]  # orbit azimuth (rlhf_tf.render.camera)
  render_key: str  # names this view's renderings in the image cache


class AppState:
  """The state of one app (dispenser, locks, caches) for one process."""

  def __init__(
      self,
      store_path,
      render_png: Callable[[str, int], bytes],
      keys: auth.InspectorKeys,
      scene_ids: Optional[Sequence[str]],
      render_key: str,
      jh_png: Optional[Callable],
      votes_target: int,
      dispenser_kwargs: dict,
      presets=(),
      views: Sequence[View] = (),
  ):
    if not isinstance(keys, auth.InspectorKeys):
      raise TypeError(
          'create_app needs keys=auth.InspectorKeys(...): every '
          'inspector signs in with a personal link'
      )
    self.keys = keys
    self.store_path = Path(store_path)
    self.render_png = render_png
    # views=(): one view, callbacks without a view argument (see create_app).
    self.turns = bool(views)
    self.views = tuple(View(*v) for v in views) or (View(None, render_key),)
    if len(self.views) > MAX_VIEWS or len(
        {v.render_key for v in self.views}
    ) != len(self.views):
      raise ValueError(
          f'views must be 1..{MAX_VIEWS} with distinct render keys; got '
          f'{[v.render_key for v in self.views]}'
      )
    self.jh_png = jh_png
    self.votes_target = int(votes_target)
    self._local = threading.local()
    known = [s['scene_id'] for s in self.store().scenes()]
    scene_ids = list(scene_ids) if scene_ids else known
    unknown = sorted(set(scene_ids) - set(known))
    if not scene_ids or unknown:
      raise ValueError(
          f'scenes {unknown or scene_ids} are not in the store '
          f'{self.store_path} (it has {known})'
      )
    self.scene_ids = tuple(scene_ids)
    self.dispenser = pairs_lib.Dispenser(self.scene_ids, **dispenser_kwargs)
    self.clock = self.dispenser.leases.clock
    self.vote_lock = threading.Lock()
    self.render_locks = collections.defaultdict(threading.Lock)
    self.jh_cache: collections.OrderedDict = collections.OrderedDict()
    self.jh_lock = threading.Lock()
    self.presets = tuple((str(name), fn) for name, fn in presets)
    self.preset_cache: dict = {}  # (scene, index, view) -> PNG; few of them

  def store(self) -> store_lib.PreferenceStore:
    """This thread's store (SQLite connections are per thread)."""
    s = getattr(self._local, 'store', None)
    if s is None:
      s = self._local.store = store_lib.PreferenceStore(self.store_path)
    return s

  def scene(self, scene_id) -> str:
    """``scene_id`` if this app hands out its pairs, else 404."""
    if not isinstance(scene_id, str) or scene_id not in self.scene_ids:
      raise ApiError(404, f'unknown scene {scene_id!r}')
    return scene_id


def current() -> AppState:
  """The state of the app serving this request."""
  return flask.current_app.extensions[EXTENSION]
