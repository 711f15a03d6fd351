"""Job `collect`: serve the browser preference interface to real inspectors.

  python launch.py --experiment=experiments/collect.py --workdir=DIR

Opens (or creates) the preference store, makes sure the configured scene is
in it (``default_scene``: the built-in phantom, its action set and pairs),
and serves ``rlhf_tf.ui.app`` with waitress until Ctrl-C. All state is in the
store, so stopping and restarting resumes every inspector.

Renderings: ``config.render.mode`` 'volume' raymarches the phantom with each
action's transfer function (``rlhf_tf.render.ray_cache``: the view is
sampled once, then each TF renders in well under a second on a CPU);
'jh' draws a stand-in instead: the joint histogram with the action's polygon;
'auto' (default) uses 'volume' when the renderer imports, else 'jh'. Each
rendering is made on first request and cached in the store's image cache
under a key naming the mode and settings; ``render.prerender`` fills the
cache in a background thread so inspectors rarely wait.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Callable, NamedTuple, Optional

from absl import logging
import jax
import ml_collections
import numpy as np

from rlhf_tf.preferences import actions as actions_lib
from rlhf_tf.preferences import store as store_lib
from rlhf_tf.render import histogram
from rlhf_tf.ui import app as app_lib

LEFT_COLOR, RIGHT_COLOR = '#ff9d2e', '#38b6ff'  # match the page's CSS


class Scene(NamedTuple):
  """What the app needs to show a scene."""
  scene_id: str
  render_png: Callable[[str, int], bytes]
  render_key: str
  jh_png: Callable[[str, int, int], bytes]


def store_path(config, workdir: str) -> str:
  return config.store_path or os.path.join(workdir, 'preferences.sqlite')


# ---------------------------------------------------------------- images

def png_bytes(rgb: np.ndarray) -> bytes:
  """[H, W, 3] floats in [0, 1] -> PNG bytes."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  img = (np.clip(np.asarray(rgb, np.float32), 0.0, 1.0) * 255 + 0.5)
  buf = io.BytesIO()
  Image.fromarray(img.astype(np.uint8)).save(buf, format='PNG')
  return buf.getvalue()


def jh_figure_png(jh_image: np.ndarray, polygons, colors,
                  size_px: int = 384, fill: bool = False) -> bytes:
  """The JH (log counts, origin lower-left) with polygon outlines.

  Uses matplotlib's object API (no pyplot state), so server threads can draw
  at the same time.
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  from matplotlib.patches import Polygon  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(size_px / 100, size_px / 100), dpi=100)
  ax = fig.add_axes((0, 0, 1, 1))
  ax.imshow(jh_image, origin='lower', extent=(0, 1, 0, 1), cmap='gray',
            interpolation='nearest')
  for verts, color in zip(polygons, colors):
    ax.add_patch(Polygon(np.asarray(verts), closed=True, fill=fill,
                         facecolor=color, alpha=0.35 if fill else 1.0,
                         edgecolor=color, linewidth=2.0))
    if fill:
      ax.add_patch(Polygon(np.asarray(verts), closed=True, fill=False,
                           edgecolor=color, linewidth=2.0))
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_axis_off()
  buf = io.BytesIO()
  fig.savefig(buf, format='png', facecolor='black')
  return buf.getvalue()


# ---------------------------------------------------------------- scene

def _experts(config) -> np.ndarray:
  return np.asarray(config.scene.experts, np.float32)


def create_scene(config, store, volume, jh) -> None:
  """Register the scene: actions (experts, random, augmented) and pairs."""
  sc = config.scene
  key = jax.random.key(config.seed)
  key_actions, key_pairs = jax.random.split(key)
  aset = actions_lib.build_action_set(
      key_actions, _experts(config), num_random=sc.num_random,
      num_augmented=sc.num_augmented, sigma=sc.sigma)
  store.add_scene(config.scene_id, description=f'{volume.name} (built-in)',
                  volume_source=sc.volume.to_dict(),
                  jh_meta=dict(bins=jh.bins, hu_min=jh.axes.hu_min,
                               hu_max=jh.axes.hu_max,
                               grad_max=jh.axes.grad_max))
  verts = np.asarray(aset.vertices)
  first = None
  for kind in (actions_lib.EXPERT, actions_lib.RANDOM, actions_lib.AUGMENTED):
    idx = aset.indices(kind)
    if len(idx) == 0:
      continue
    parents = None
    if kind == actions_lib.AUGMENTED:
      parents = [first + aset.parent[i] for i in idx]
    ids = store.add_actions(config.scene_id, verts[idx].tolist(), kind,
                            parent_ids=parents)
    if first is None:
      first = ids[0]
  num_pairs = min(sc.num_pairs, len(aset) * (len(aset) - 1) // 2)
  pairs = actions_lib.sample_pairs(key_pairs, len(aset), num_pairs)
  store.add_pairs(config.scene_id, [tuple(map(int, p)) for p in pairs])
  logging.info('scene %s: %d actions, %d pairs', config.scene_id, len(aset),
               num_pairs)


def _volume_renderer(config, volume, jh) -> Optional[Callable]:
  """action vertices -> RGB via the ray cache, or None if not importable."""
  try:
    # pylint: disable=g-import-not-at-top
    from rlhf_tf.render import camera, ray_cache, raymarch
    from rlhf_tf.render import transfer_function
  except ImportError as e:
    logging.warning('renderer not importable (%s): JH stand-in images', e)
    return None
  rc = config.render
  settings = raymarch.RenderSettings(step_mm=rc.step_mm)
  cam = camera.head_camera(volume.hu.shape, volume.spacing, width=rc.size,
                           height=rc.size)
  grad = raymarch.gradient_volume(volume.hu, volume.spacing)
  cache = ray_cache.build_ray_cache(volume.hu, grad, volume.spacing, jh.axes,
                                    cam, jh.bins, settings)

  def render(vertices):
    table = transfer_function.tf_table(np.asarray(vertices, np.float32),
                                       jh.bins, tau=rc.tau)
    return np.asarray(ray_cache.render_cached(cache, table, settings))[..., :3]
  return render


def default_scene(config, store) -> Scene:
  """The configured phantom scene: created in the store when missing, plus
  its render and JH-overlay callbacks (the volume is rebuilt each start;
  the phantom is deterministic per seed)."""
  from rlhf_tf.data import sources  # pylint: disable=g-import-not-at-top
  volume = sources.load_volume(config.scene.volume)
  h = config.scene.histogram
  jh = histogram.joint_histogram(volume, bins=h.bins,
                                 hu_window=tuple(h.hu_window),
                                 grad_percentile=h.grad_percentile)
  if config.scene_id not in {s['scene_id'] for s in store.scenes()}:
    create_scene(config, store, volume, jh)
  mode = config.render.mode
  if mode not in ('auto', 'volume', 'jh'):
    raise ValueError(f"render.mode must be 'auto', 'volume' or 'jh'; got "
                     f'{mode!r}')
  volume_render = None if mode == 'jh' else _volume_renderer(config, volume,
                                                             jh)
  if mode == 'volume' and volume_render is None:
    raise ImportError("render.mode='volume' but the renderer is unavailable")
  path = store.path
  local = threading.local()
  lock = threading.Lock()  # one render at a time: each uses every core

  def vertices(scene_id, action_id):
    s = getattr(local, 'store', None)  # SQLite: one connection per thread
    if s is None:
      s = local.store = store_lib.PreferenceStore(path)
    return s.vertices_array(scene_id, [action_id])[0]

  def render_png(scene_id, action_id):
    v = vertices(scene_id, action_id)
    with lock:
      if volume_render is None:
        return jh_figure_png(jh.image, [v], [LEFT_COLOR], config.render.size,
                             fill=True)
      return png_bytes(volume_render(v))

  def jh_png(scene_id, left, right):
    return jh_figure_png(jh.image, [vertices(scene_id, left),
                                    vertices(scene_id, right)],
                         [LEFT_COLOR, RIGHT_COLOR], 300)

  kind = 'volume' if volume_render else 'jh-standin'
  key = (f'{kind}-{config.render.size}px-step{config.render.step_mm}'
         f'-tau{config.render.tau}')
  return Scene(config.scene_id, render_png, key, jh_png)


def prerender(path: str, scene: Scene, stop: threading.Event):
  """Fill the image cache for every action of the scene (background)."""
  store = store_lib.PreferenceStore(path)
  try:
    for action in store.actions(scene.scene_id):
      if stop.is_set():
        return
      if store.render_path(scene.scene_id, action.action_id,
                           scene.render_key) is None:
        store.add_render(scene.scene_id, action.action_id, scene.render_key,
                         scene.render_png(scene.scene_id, action.action_id))
    logging.info('prerender: all actions of %s cached', scene.scene_id)
  except Exception:  # pylint: disable=broad-except
    logging.exception('prerender stopped; renders continue on demand')
  finally:
    store.close()


def load_ensemble_rewards(config) -> Optional[Callable]:
  """scene_id -> [M, A] rewards from ``config.ensemble_rewards_path`` (.npy),
  for selection='disagreement'."""
  if not config.ensemble_rewards_path:
    if config.selection == 'disagreement':
      raise ValueError("selection='disagreement' needs ensemble_rewards_path "
                       '(an .npy [M models, A actions] array)')
    return None
  rewards = np.load(config.ensemble_rewards_path)
  if rewards.ndim != 2:
    raise ValueError(f'{config.ensemble_rewards_path}: expected [M, A], got '
                     f'{rewards.shape}')
  return lambda scene_id: rewards


def run(config: ml_collections.ConfigDict, workdir: str,
        prepare_scene: Callable = None):
  """Prepare the scene, then serve the preference UI until interrupted."""
  path = store_path(config, workdir)
  store = store_lib.PreferenceStore(path)
  scene = (prepare_scene or default_scene)(config, store)
  store.close()
  app = app_lib.create_app(
      path, scene.render_png, scene_ids=[scene.scene_id],
      render_key=scene.render_key, jh_png=scene.jh_png,
      votes_target=config.votes_target, lease_seconds=config.lease_seconds,
      overlap=config.overlap, seed=config.seed, selection=config.selection,
      ensemble_rewards=load_ensemble_rewards(config))
  stop = threading.Event()
  if config.render.prerender:
    threading.Thread(target=prerender, args=(path, scene, stop),
                     daemon=True, name='prerender').start()
  print(f'store: {path} (render key {scene.render_key})', flush=True)
  try:
    app_lib.serve(app, config.host, config.port, config.threads)
  finally:
    stop.set()
