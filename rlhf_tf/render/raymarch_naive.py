"""Naive reference raymarcher: ``jax.scipy.ndimage.map_coordinates`` for
every sample and a plain cumprod, with the same geometry and optics as the
direct renderer (``rlhf_tf.render.raymarch``). For benchmarks and
cross-checks only."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import compositing
from rlhf_tf.render.gradient import central_gradient
from rlhf_tf.render.histogram import JHAxes
from rlhf_tf.render.ray_samples import map_tiles
from rlhf_tf.render.raymarch import check_table
from rlhf_tf.render.render_settings import RenderSettings
from rlhf_tf.render.sampling import (
    grid_start,
    intersect_box,
    num_samples,
    pixel_phase,
    segment_span,
)


@functools.partial(jax.jit, static_argnames=('spacing', 'axes', 'settings'))
def _render_naive(
    volume_hu, gradient, spacing, axes, tf_table, camera, settings
):
  map_coordinates = jax.scipy.ndimage.map_coordinates
  shape = volume_hu.shape
  num = num_samples(shape, spacing, settings.step_mm)
  by, bx = tf_table.shape[:2]
  origins, directions = camera_lib.generate_rays(camera)
  h, w = origins.shape[:2]
  lo, hi = camera_lib.volume_box(shape, spacing)

  def tile_fn(rays):
    o, d, phase = rays
    t0, t1 = intersect_box(o, d, lo, hi)
    start = grid_start(t0, settings.step_mm, phase)
    seg, mid = segment_span(
        start, jnp.maximum(t1 - t0, 0.0), num, settings.step_mm
    )
    t = (t0 - start)[:, None] + mid
    p = (o[:, None] + t[..., None] * d[:, None]) / jnp.asarray(spacing)
    pts = [p[..., a] for a in range(3)]
    interp = lambda v: map_coordinates(v, pts, order=1, mode='nearest')
    hu = interp(volume_hu)
    g = jnp.stack([interp(gradient[..., a]) for a in range(3)], -1)
    gx = axes.hu_to_x(hu) * bx - 0.5
    gy = axes.grad_to_y(jnp.linalg.norm(g, axis=-1)) * by - 0.5
    rgba = jnp.stack(
        [
            map_coordinates(tf_table[..., c], [gy, gx], order=1, mode='nearest')
            for c in range(4)
        ],
        -1,
    )
    rgb = rgba[..., :3]
    if settings.shading:
      eps = settings.normal_eps * axes.grad_max
      if settings.tensor_normals:  # sqrt(l^T J l) / max(sqrt(tr J), eps).
        jll = sum(
            interp(gradient[..., a] * gradient[..., b])
            * d[:, None, a]
            * d[:, None, b]
            for a in range(3)
            for b in range(3)
        )
        tr = sum(interp(gradient[..., a] ** 2) for a in range(3))
        ndl = jnp.sqrt(jnp.maximum(jll, 0.0)) / jnp.maximum(
            jnp.sqrt(jnp.maximum(tr, 0.0)), eps
        )
      else:
        n = g / jnp.maximum(jnp.linalg.norm(g, axis=-1, keepdims=True), eps)
        ndl = jnp.abs(jnp.sum(n * d[:, None], -1))
      ndl = jnp.minimum(ndl, 1.0)
      lit = rgb * (settings.ambient + settings.diffuse * ndl)[..., None]
      rgb = jnp.minimum(
          lit + (settings.specular * ndl**settings.shininess)[..., None], 1.0
      )
    alpha = 1.0 - (1.0 - rgba[..., 3]) ** (seg / settings.reference_step_mm)
    trans = jnp.cumprod(1.0 - alpha, axis=-1)
    trans = jnp.concatenate([jnp.ones_like(trans[:, :1]), trans[:, :-1]], -1)
    return (
        jnp.sum((trans * alpha)[..., None] * rgb, axis=1),
        1.0 - trans[:, -1] * (1.0 - alpha[:, -1]),
    )

  phase = pixel_phase(jnp.arange(h * w), w, settings.jitter)
  rgb, acc = map_tiles(
      tile_fn,
      (origins.reshape(-1, 3), directions.reshape(-1, 3), phase),
      settings.tile_rays,
      checkpoint=False,
  )
  return compositing.over_background(rgb, acc, settings.background).reshape(
      h, w, 4
  )


def render_naive(
    volume_hu,
    gradient,
    spacing,
    axes: JHAxes,
    tf_table,
    camera: camera_lib.Camera,
    settings: RenderSettings = RenderSettings(),
):
  """Reference raymarcher: jax.scipy.ndimage.map_coordinates (order 1) for
  every sample of every ray and a plain cumprod; same geometry and optics as
  render(). For benchmarks and cross-checks only; point sampling only."""
  check_table(tf_table)
  if settings.preintegrate:
    raise ValueError(
        'render_naive point-samples; pass settings.preintegrate=False '
        '(tests/test_preintegration.py checks the pre-integrated paths)'
    )
  spacing = tuple(float(s) for s in np.asarray(spacing).reshape(3))
  if gradient is None:
    gradient = central_gradient(volume_hu, spacing)
  return _render_naive(
      volume_hu, gradient, spacing, axes, tf_table, camera, settings
  )
