"""The views a pair turns through in the preference UI, rendered to PNG.

A turntable of ``num_views`` azimuths around each scene: view k looks from
azimuth ``render.azimuth + 360 k / num_views`` degrees (camera.py's orbit;
elevation, zoom, size and TF settings as ``config.render``), so view 0 is
the scene's own view and keeps its render key: a store filled before views
existed (or with one view) shows at once.

Each view of a scene re-renders every action through its own ray cache
(``Scene.with_view``: camera and cache of the new azimuth, nothing else
recomputed), built when first needed and kept in a least-recently-used set
of ``max_caches`` (a 256^2 cache of the 128^3 phantom is ~110 MB): the caches
of one scene's views stay while its pairs are judged, and a store of many
scenes does not hold them all.

One render at a time (each uses every core). ``RenderGate`` lets a render a
browser waits for go before the background pre-rendering's next one.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from typing import Callable, Mapping

from absl import logging
import ml_collections

from rlhf_tf.input_error import ConfigError
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.ui import app_state


def view_azimuths(base_deg: float, num_views: int) -> tuple[float, ...]:
  """Azimuths (degrees) of ``num_views`` evenly spaced views, base first."""
  if isinstance(num_views, bool) or int(num_views) != num_views:
    raise ConfigError(f'ui.azimuths must be an integer; got {num_views!r}')
  if not 1 <= num_views <= app_state.MAX_VIEWS:
    raise ConfigError(
        f'ui.azimuths must be in [1, {app_state.MAX_VIEWS}]; got {num_views}'
    )
  return tuple(
      float(base_deg) + 360.0 * k / int(num_views) for k in range(num_views)
  )


def check_config(ui) -> None:
  """Refuses ``config.ui`` values that cannot work, naming the key."""
  view_azimuths(0.0, ui.azimuths)
  if isinstance(ui.view_caches, bool) or not isinstance(ui.view_caches, int):
    raise ConfigError(
        f'ui.view_caches must be an integer; got {ui.view_caches!r}'
    )
  if ui.view_caches < 1:
    raise ConfigError(f'ui.view_caches must be >= 1; got {ui.view_caches}')


def nearest_first(num_views: int) -> list[int]:
  """Views 1 .. n-1, nearest to view 0 first, both ways (1, n-1, 2, n-2,
  ...): the order the page preloads them in (app.js preloadViews). Mirror
  views have alike ray caches, so the second of each two often reuses the
  first's compiled loops."""
  out = []
  for step in range(1, num_views // 2 + 1):
    for k in (step, num_views - step):
      if k not in out:
        out.append(k)
  return out


class RenderGate:
  """One render at a time; foreground (a browser waits) before background."""

  def __init__(self):
    self._cond = threading.Condition()
    self._busy = False
    self._waiting = 0  # foreground callers waiting for the gate

  @contextlib.contextmanager
  def foreground(self):
    with self._cond:
      self._waiting += 1
      try:
        self._cond.wait_for(lambda: not self._busy)
      finally:
        self._waiting -= 1
      self._busy = True
    try:
      yield
    finally:
      with self._cond:
        self._busy = False
        self._cond.notify_all()

  @contextlib.contextmanager
  def background(self):
    with self._cond:
      self._cond.wait_for(lambda: not self._busy and not self._waiting)
      self._busy = True
    try:
      yield
    finally:
      with self._cond:
        self._busy = False
        self._cond.notify_all()


class SceneViews:
  """The turntable views of some scenes, their caches built on first use.

  Args:
    scenes: {scene_id: Scene} at their own view (view 0).
    num_views: views per scene (1: the scene's view only).
    max_caches: ray caches of views other than 0 kept at once (LRU).
    gate: the RenderGate every render of the app goes through.
  """

  def __init__(
      self,
      scenes: Mapping[str, scenes_lib.Scene],
      num_views: int,
      max_caches: int,
      gate: RenderGate,
  ):
    if isinstance(max_caches, bool) or int(max_caches) < 1:
      raise ConfigError(f'ui.view_caches must be >= 1; got {max_caches!r}')
    self.scenes = dict(scenes)
    first = next(iter(self.scenes.values()))
    self.azimuths = view_azimuths(first.render_cfg['azimuth'], num_views)
    self.max_caches = int(max_caches)
    self.gate = gate
    self._cached: collections.OrderedDict = collections.OrderedDict()
    self.builds = 0  # caches built so far (for benchmarks and tests)

  def render_cfg(self, scene_id: str, view: int) -> dict:
    """config.render of a view (the scene's, at the view's azimuth)."""
    return dict(self.scenes[scene_id].render_cfg, azimuth=self.azimuths[view])

  def render_key(self, scene_id: str, view: int) -> str:
    return scenes_lib.render_key(
        ml_collections.ConfigDict(self.render_cfg(scene_id, view))
    )

  def app_views(self, scene_id: str) -> tuple[app_state.View, ...]:
    """The app's views (azimuth, render key); scenes of one dataset share
    their render config, so any scene names them."""
    return tuple(
        app_state.View(az, self.render_key(scene_id, k))
        for k, az in enumerate(self.azimuths)
    )

  def scene(self, scene_id: str, view: int) -> scenes_lib.Scene:
    """The scene seen from view ``view`` (call inside the gate)."""
    if view == 0:
      return self.scenes[scene_id]
    key = (scene_id, view)
    if key in self._cached:
      self._cached.move_to_end(key)
      return self._cached[key]
    while len(self._cached) >= self.max_caches:
      self._cached.popitem(last=False)
    logging.info('ray cache of %s at azimuth %g', scene_id, self.azimuths[view])
    built = self.scenes[scene_id].with_view(azimuth=self.azimuths[view])
    self._cached[key] = built
    self.builds += 1
    return built

  def render_png(
      self, scene_id: str, vertices, view: int, background: bool = False
  ) -> bytes:
    """PNG of one action [n, 2] of a scene at a view."""
    with self.gate.background() if background else self.gate.foreground():
      return scenes_lib.png_bytes(self.scene(scene_id, view).render(vertices))

  def render_with(
      self,
      scene_id: str,
      view: int,
      render: Callable[[scenes_lib.Scene], bytes],
  ) -> bytes:
    """``render(scene at the view)`` in the foreground (e.g. a preset)."""
    with self.gate.foreground():
      return render(self.scene(scene_id, view))
