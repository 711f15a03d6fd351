"""Rendering a cached view (``rlhf_tf.render.ray_cache``) under a TF table:
``render_cached`` and ``render_cached_labels``.

RENDERING: ``rlhf_tf.render.cached_march`` (XLA) walks the rays of a tile one
sample index at a time (fields stored sample-major, [rows, tile]), forward
and, for d image / d TF table, by a hand-written adjoint that re-walks the
rays. Memory of both: [tile] carries, whatever the sample count.

EARLY RAY TERMINATION AND PER-TF SKIPPING, ON CPU: there ``render_cached``
runs ``rlhf_tf.render.cached_native`` (numba, all cores, through
``jax.experimental.buffer_callback``: no copy of the cache), which walks
each ray on its own: a ray stops once its transmittance is below
``settings.termination_transmittance`` (default 1e-3; a pixel then differs
from the full march by less than it; 0: exact), and a sample whose four TF
bins have alpha = 0 costs four loads (exact). Its adjoint re-walks exactly
the samples the forward composited, so gradients are exact for the image
rendered. Chunk-level skipping and termination in the XLA march were
measured to gain little here: tiles of rays sorted by length hold, in
almost every 32-row chunk, some ray still visible and some opacity (on
Cranium 256^2 with the default TF, 66 of 68 chunks are needed, while per
ray only 4.99 M of 7.61 M samples lie before termination and 0.70 M of
those have opacity); narrower, image-square tiles would skip more but cost
XLA 1.3-1.8x more per sample. With pre-integration the CPU runs
``rlhf_tf.render.cached_native_segments``, the same native walk over
segments. Elsewhere (GPU, TPU, ``render_cached_labels``) the XLA march
runs to the end of every ray.
"""

from __future__ import annotations

import functools

import jax

from rlhf_tf.render import (
    cached_march,
    cached_native,
    cached_native_segments,
    cached_segments,
)
from rlhf_tf.render.ray_cache import RayCache
from rlhf_tf.render.render_settings import RenderSettings


def _march(settings):
  """The cached march of the settings' classification."""
  return cached_segments if settings.preintegrate else cached_march


def _image_march(settings):
  """The module whose cached_image renders these settings: on CPU the
  native march (cached_native, or cached_native_segments with
  pre-integration: early ray termination, per-sample / per-segment
  empty-space skipping, all cores), else the XLA one."""
  if jax.default_backend() == 'cpu':
    if settings.preintegrate:
      return cached_native_segments
    return cached_native
  return _march(settings)


def _check(cache: RayCache, tf_table, settings):
  if tuple(tf_table.shape[-3:-1]) != cache.bins or tf_table.shape[-1] != 4:
    raise ValueError(
        f'tf_table {tf_table.shape} does not match the cache '
        f'bins {cache.bins} (+ RGBA)'
    )
  baked = dict(
      step_mm=cache.step_mm,
      shading=cache.shading,
      shininess=cache.shininess,
      normal_eps=cache.normal_eps,
      jitter=cache.jitter,
      preintegrate=cache.preintegrate,
      tensor_normals=cache.tensor_normals,
  )
  for k, v in baked.items():
    if cache.shading or k in ('step_mm', 'shading', 'jitter', 'preintegrate'):
      if getattr(settings, k) != v:
        raise ValueError(
            f'settings.{k}={getattr(settings, k)} differs from '
            f'the cache ({v}); rebuild the cache'
        )


@functools.partial(jax.jit, static_argnames=('settings',))
def _render_cached(cache: RayCache, tf_table, settings):
  image = _image_march(settings).cached_image(cache, tf_table, settings)
  return image.reshape(cache.height, cache.width, 4)


def render_cached(
    cache: RayCache,
    tf_table,
    settings: RenderSettings = (RenderSettings()),
):
  """Renders a cached view with a TF table (jitted, vmappable over tables,
  differentiable w.r.t. the table).

  Args:
    cache: from build_ray_cache (same step / shading settings).
    tf_table: [bins_y, bins_x, 4] RGBA in [0, 1] (alpha per reference step).
    settings: ambient, diffuse, specular, background and reference_step_mm
      are applied here; step_mm, shading, shininess and normal_eps must
      equal the cache's (ValueError otherwise).

  Returns:
    [H, W, 4] RGBA in [0, 1], equal to raymarch.render() within ~1e-4 (with
    its empty-space skipping and early termination off, and
    settings.termination_transmittance = 0 for the cache on CPU; 2e-3 with
    them).
  """
  _check(cache, tf_table, settings)
  return _render_cached(cache, tf_table, settings)


@functools.partial(jax.jit, static_argnames=('settings', 'num_labels'))
def _render_cached_labels(cache: RayCache, tf_table, settings, num_labels):
  image, _, weights, hits = _march(settings).render_tiles(
      cache, tf_table, settings, num_labels
  )
  shape = (cache.height, cache.width)
  return (
      image.reshape(shape + (4,)),
      weights.reshape(shape + (num_labels,)),
      hits.reshape(shape + (num_labels,)),
  )


def render_cached_labels(
    cache: RayCache,
    tf_table,
    num_labels: int,
    settings: RenderSettings = (RenderSettings()),
):
  """A cached rendering and the per-pixel compositing weight of each label.

  W_g(pixel) = sum_i T_i a_i [label_i = g], the share of the pixel's colour
  C = sum_i T_i a_i c_i that samples of label g make; sum_g W_g is the
  pixel's opacity. One pass gives the image too (same as render_cached).
  The cache must have been built with ``labels``.

  Args:
    cache: from build_ray_cache(..., labels=...).
    tf_table: [bins_y, bins_x, 4] RGBA.
    num_labels: G, labels are 0..G-1.
    settings: as for render_cached.

  Returns:
    (rgba [H, W, 4] as render_cached, weights [H, W, G] in [0, 1],
     hits [H, W, G] bool: whether the pixel's ray meets each label at all,
     whatever the TF).
  """
  _check(cache, tf_table, settings)
  if cache.tiles.label is None:
    raise ValueError(
        'the ray cache was built without labels; pass '
        'labels= to build_ray_cache'
    )
  return _render_cached_labels(cache, tf_table, settings, int(num_labels))
