"""A scene: one volume, its JH, a fixed view and the expert actions.

Paper sec. 2-3: each CT image is a scene; actions are polygons in its JH and
each is judged by its 3D rendering. A Scene bundles what every later stage
needs: the JH (the reward model's state, eq. 1), the ray cache of the view
(so any TF re-renders as a lookup, see rlhf_tf.render.ray_cache), tissue
groups for the simulated inspector, and expert actions.

Config (``config.render``):
  image_size: rendered images are image_size^2 pixels.
  step_mm: sample spacing along rays (0 = the smallest voxel spacing).
  tau, alpha_max: TF edge softness (JH units) and polygon opacity.
  zoom, azimuth, elevation: the orbit view of the head (degrees).
  shading: Blinn-Phong headlight on/off.
  preintegrate: classification of the samples (render_settings.RenderSettings):
    False = point samples (the TF at each sample), True = pre-integrated
    segments. The simulated inspector's votes and scores depend on it, so
    an experiment that reports them pins it.
  tensor_normals: shading from the gradient's structure tensor at each
    sample instead of the mean gradient (RenderSettings.tensor_normals):
    with preintegrate, the renderer free of wood-grain rings and of the
    flicker of thin plates seen edge-on (issue 14's quality goals).
"""

from __future__ import annotations

import dataclasses
import functools
import io
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from rlhf_tf.data.volume import Volume
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.input_error import ConfigError, InputError
from rlhf_tf.preferences import experts as experts_lib
from rlhf_tf.preferences import tissues
from rlhf_tf.render import (
    cached_render,
    histogram,
    many_actions,
    ray_cache,
    render_settings,
    transfer_function,
)
from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import gradient as gradient_lib


def default_config() -> ml_collections.ConfigDict:
  """``config.render``: the view and TF settings of a scene's renderings."""
  return ml_collections.ConfigDict(
      dict(
          image_size=256,
          step_mm=0.0,
          tau=0.01,
          alpha_max=0.5,
          zoom=1.3,
          azimuth=0.0,
          elevation=10.0,
          shading=True,
          preintegrate=False,
          tensor_normals=False,
      )
  )


def render_key(render_cfg: ml_collections.ConfigDict) -> str:
  """Names the view and TF settings (``config.render``) a cached PNG was
  made with, so the store's image cache never mixes renderings."""
  r = render_cfg
  # Point samples keep the key they had before the setting existed.
  preintegrated = '-preint' if r.get('preintegrate', False) else ''
  preintegrated += '-tensor' if r.get('tensor_normals', False) else ''
  return (
      f'vol-{r.image_size}px-az{r.azimuth:g}-el{r.elevation:g}-'
      f'zoom{r.zoom:g}-step{r.step_mm:g}-tau{r.tau:g}-a{r.alpha_max:g}-'
      f'shade{int(r.shading)}{preintegrated}'
  )


def _number(
    cfg,
    key: str,
    low: float,
    high: float = np.inf,
    low_open: bool = False,
    integer: bool = False,
) -> float:
  """``config.render.<key>`` as a number in range, or a ConfigError naming
  the key."""
  value = cfg[key]
  ok = not isinstance(value, (bool, str)) and isinstance(
      value, (int, float, np.number)
  )
  if ok:
    v = float(value)
    ok = (
        (np.isfinite(v) or high == np.inf and v == np.inf)
        and (v > low if low_open else v >= low)
        and v <= high
        and (not integer or v.is_integer())
    )
  if not ok:
    bracket = '(' if low_open else '['
    kind = 'an integer' if integer else 'a number'
    raise ConfigError(
        f'render.{key} must be {kind} in {bracket}{low:g}, '
        f'{high:g}]; got {value!r}'
    )
  return value


def check_render_config(cfg) -> None:
  """Refuses ``config.render`` values that cannot make an image, naming the
  key (e.g. ``render.step_mm=-1``)."""
  _number(cfg, 'image_size', 1, 8192, integer=True)
  _number(cfg, 'step_mm', 0.0)  # 0 = the smallest voxel spacing
  _number(cfg, 'tau', 0.0, low_open=True)
  _number(cfg, 'alpha_max', 0.0, 1.0, low_open=True)
  _number(cfg, 'zoom', 0.0, low_open=True)
  _number(cfg, 'azimuth', -1e6, 1e6)
  _number(cfg, 'elevation', -90.0, 90.0)
  for key in ('shading', 'preintegrate', 'tensor_normals'):
    value = cfg.get(key, False)
    if not isinstance(value, (bool, int, np.bool_)):
      raise ConfigError(f'render.{key} must be True or False; got {value!r}')


@dataclasses.dataclass
class Scene:
  """Everything needed to show, judge and learn from actions on one volume."""

  scene_id: str
  volume: Volume
  jh: histogram.JointHistogram
  groups: np.ndarray  # uint8 [Z, Y, X] tissue group per voxel
  camera: camera_lib.Camera
  settings: render_settings.RenderSettings
  cache: ray_cache.RayCache  # built with the tissue groups as labels
  experts: np.ndarray  # [E, n, 2]
  tau: float
  alpha_max: float
  render_cfg: dict  # the config.render the view was made with

  def with_view(self, **changes) -> 'Scene':
    """The same scene seen from another view (e.g. azimuth=90): a new
    camera and ray cache, nothing else recomputed."""
    cfg = ml_collections.ConfigDict(dict(self.render_cfg, **changes))
    camera, settings, cache = _view(self.volume, self.jh, self.groups, cfg)
    return dataclasses.replace(
        self,
        camera=camera,
        settings=settings,
        cache=cache,
        render_cfg=cfg.to_dict(),
    )

  @property
  def bins(self) -> int:
    return self.jh.bins

  def tf_table(self, vertices):
    """[..., bins, bins, 4] RGBA TF of one action [n, 2] (vmap for many)."""
    return transfer_function.tf_table(
        vertices, self.bins, tau=self.tau, alpha_max=self.alpha_max
    )

  def render(self, vertices) -> jnp.ndarray:
    """[H, W, 4] RGBA rendering of one action [n, 2]."""
    return cached_render.render_cached(
        self.cache, self.tf_table(vertices), self.settings
    )

  def render_tissues(self, vertices):
    """(rgba [H, W, 4], tissue weights [H, W, G], hits [H, W, G])."""
    return cached_render.render_cached_labels(
        self.cache, self.tf_table(vertices), len(tissues.GROUPS), self.settings
    )

  def iter_render_many(
      self,
      vertices,
      tissue_weights: bool = False,
      mesh=None,
      per_device: int = 4,
  ):
    """Renders actions [A, n, 2] in chunks split over ``mesh``'s 'data'
    axis; yields (start, (rgba [k, H, W, 4],)) or, with tissue_weights,
    (start, (rgba, weights [k, H, W, G], hits [k, H, W, G])) as host
    arrays (see rlhf_tf.render.many_actions)."""
    return many_actions.iter_render_actions(
        self.cache,
        vertices,
        tau=self.tau,
        alpha_max=self.alpha_max,
        settings=self.settings,
        num_labels=len(tissues.GROUPS) if tissue_weights else 0,
        mesh=mesh,
        per_device=per_device,
    )

  def render_many(self, vertices, mesh=None) -> np.ndarray:
    """[A, H, W, 4] host RGBA of actions [A, n, 2] (split over ``mesh``)."""
    return many_actions.render_actions(
        self.cache,
        vertices,
        tau=self.tau,
        alpha_max=self.alpha_max,
        settings=self.settings,
        mesh=mesh,
    )[0]


def build_scene(
    scene_id: str,
    volume: Volume,
    histogram_cfg,
    render_cfg,
    experts: Optional[np.ndarray] = None,
    mesh=None,
) -> Scene:
  """Computes the JH, tissue groups, view and ray cache of a volume.

  Args:
    scene_id: name of the scene (store key).
    volume: the CT volume.
    histogram_cfg: ``config.histogram`` (bins, hu_window, grad_percentile).
    render_cfg: ``config.render`` (see the module docstring).
    experts: [E, n, 2] expert actions; None = derived from the tissue groups
      (``experts.expert_actions``).
    mesh: optional jax.sharding.Mesh: the ray cache's rays are sampled split
      over its 'data' axis (``ray_cache.build_ray_cache``), then the cache
      is gathered onto this process's first device, as without a mesh.
  """
  check_render_config(render_cfg)
  grad_mag = gradient_lib.gradient_magnitude(volume.hu, volume.spacing)
  jh = histogram.from_config(volume, histogram_cfg, grad_mag=grad_mag)
  groups = tissues.tissue_groups(volume)
  if experts is None:
    try:
      experts = experts_lib.expert_actions(volume.hu, grad_mag, groups, jh.axes)
    except InputError as e:
      raise InputError(f'volume {volume.name!r}: {e}') from e
  camera, settings, cache = _view(volume, jh, groups, render_cfg, mesh)
  return Scene(
      scene_id=scene_id,
      volume=volume,
      jh=jh,
      groups=groups,
      camera=camera,
      settings=settings,
      cache=cache,
      experts=np.asarray(experts, np.float32),
      tau=float(render_cfg.tau),
      alpha_max=float(render_cfg.alpha_max),
      render_cfg=render_cfg.to_dict(),
  )


def _view(volume: Volume, jh, groups, render_cfg, mesh=None):
  """(camera, settings, ray cache with tissue labels) of a render config
  (the cache built split over ``mesh``, see build_scene)."""
  check_render_config(render_cfg)
  size = int(render_cfg.image_size)
  camera = camera_lib.head_camera(
      volume.shape,
      volume.spacing,
      width=size,
      height=size,
      azimuth_deg=render_cfg.azimuth,
      elevation_deg=render_cfg.elevation,
      zoom=render_cfg.zoom,
  )
  step = float(render_cfg.step_mm) or float(np.min(volume.spacing))
  settings = render_settings.RenderSettings(
      step_mm=step,
      reference_step_mm=step,
      shading=bool(render_cfg.shading),
      preintegrate=bool(render_cfg.get('preintegrate', False)),
      tensor_normals=bool(render_cfg.get('tensor_normals', False)),
  )
  cache = ray_cache.build_ray_cache(
      volume.hu,
      None,
      volume.spacing,
      jh.axes,
      camera,
      jh.bins,
      settings,
      labels=groups,
      mesh=mesh,
  )
  if mesh_lib.data_size(mesh) > 1:
    # Every later use (one rendering, a gradient, render_many's replicated
    # copy) expects the cache whole on one device; in several processes
    # its shards live on other hosts (to_host gathers them, a collective).
    cache = jax.device_put(
        jax.tree_util.tree_map(mesh_lib.to_host, cache), jax.local_devices()[0]
    )
  return camera, settings, cache


@functools.partial(jax.jit, static_argnames=('size',))
def _to_uint8(rgba, size=None):
  del size
  return jnp.round(jnp.clip(rgba[..., :3], 0.0, 1.0) * 255).astype(jnp.uint8)


def rgb_uint8(rgba) -> np.ndarray:
  """[H, W, 3] uint8 of a rendering (for PNG files and the UI)."""
  return np.asarray(_to_uint8(rgba))


def png_bytes(rgba) -> bytes:
  """PNG file bytes of a rendering [H, W, 4] (its RGB over the background)."""
  buf = io.BytesIO()
  Image.fromarray(rgb_uint8(rgba)).save(buf, format='PNG')
  return buf.getvalue()
