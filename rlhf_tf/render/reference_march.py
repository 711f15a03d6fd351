"""Reference raymarcher for cross-checks and benchmarks (not for production):
jax.scipy.ndimage.map_coordinates (order 1) for every grid point and every
TF lookup, and a plain cumprod for compositing. Same sample grid,
pre-integrated classification and optics as ``raymarch.render``, written
independently of its gathers, shading helpers and log-space compositing.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import compositing
from rlhf_tf.render import sampling
from rlhf_tf.render.gradient import central_gradient
from rlhf_tf.render.histogram import JHAxes
from rlhf_tf.render.raymarch import RenderSettings
from rlhf_tf.render.raymarch import check_table
from rlhf_tf.render.raymarch import map_tiles


@functools.partial(jax.jit, static_argnames=('spacing', 'axes', 'settings'))
def _render_naive(volume_hu, gradient, spacing, axes, tf_table, camera,
                  settings):
  map_coordinates = jax.scipy.ndimage.map_coordinates
  shape = volume_hu.shape
  num = sampling.num_segments(shape, spacing, settings.step_mm)
  by, bx = tf_table.shape[:2]
  origins, directions = camera_lib.generate_rays(camera)
  h, w = origins.shape[:2]
  lo, hi = camera_lib.volume_box(shape, spacing)
  forward = camera.basis()[0]

  def tile_fn(rays):
    o, d = rays
    grid = sampling.ray_grid(o, d, forward, lo, hi, settings.step_mm)
    p = sampling.grid_points(o, d, grid, jnp.arange(num + 1))
    p = p / jnp.asarray(spacing)
    pts = [p[..., a] for a in range(3)]
    interp = lambda v: map_coordinates(v, pts, order=1, mode='nearest')
    g = jnp.stack([interp(gradient[..., a]) for a in range(3)], -1)
    fields = dict(x=axes.hu_to_x(interp(volume_hu)),
                  y=axes.grad_to_y(jnp.linalg.norm(g, axis=-1)))
    if settings.shading:
      n = g / jnp.maximum(jnp.linalg.norm(g, axis=-1, keepdims=True),
                          settings.normal_eps * axes.grad_max)
      fields['ndl'] = jnp.minimum(jnp.abs(jnp.sum(n * d[:, None], -1)), 1.0)
      fields['spec'] = fields['ndl'] ** settings.shininess
    s = sampling.classify_segments(
        fields, grid, jnp.zeros(o.shape[:1], jnp.int32), settings.substeps)
    gx, gy = s['x'] * bx - 0.5, s['y'] * by - 0.5
    rgba = jnp.stack([map_coordinates(tf_table[..., c], [gy, gx], order=1,
                                      mode='nearest') for c in range(4)], -1)
    rgb = rgba[..., :3]
    if settings.shading:
      lit = rgb * (settings.ambient + settings.diffuse * s['ndl'])[..., None]
      rgb = jnp.minimum(lit + (settings.specular * s['spec'])[..., None], 1.0)
    seg = s['seg']
    alpha = 1.0 - (1.0 - rgba[..., 3]) ** (seg / settings.reference_step_mm)
    trans = jnp.cumprod(1.0 - alpha, axis=-1)
    trans = jnp.concatenate([jnp.ones_like(trans[:, :1]), trans[:, :-1]], -1)
    return (jnp.sum((trans * alpha)[..., None] * rgb, axis=1),
            1.0 - trans[:, -1] * (1.0 - alpha[:, -1]))

  rgb, acc = map_tiles(tile_fn, (origins.reshape(-1, 3),
                                 directions.reshape(-1, 3)),
                       settings.tile_rays, checkpoint=False)
  return compositing.over_background(rgb, acc,
                                     settings.background).reshape(h, w, 4)


def render_naive(volume_hu, gradient, spacing, axes: JHAxes, tf_table,
                 camera: camera_lib.Camera,
                 settings: RenderSettings = RenderSettings()):
  """Reference raymarcher: jax.scipy.ndimage.map_coordinates (order 1) for
  every sample of every ray and a plain cumprod; same geometry and optics as
  render(). For benchmarks and cross-checks only."""
  check_table(tf_table)
  spacing = tuple(float(s) for s in np.asarray(spacing).reshape(3))
  if gradient is None:
    gradient = central_gradient(volume_hu, spacing)
  return _render_naive(volume_hu, gradient, spacing, axes, tf_table, camera,
                       settings)
