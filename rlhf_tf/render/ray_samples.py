"""The TF-independent half of marching rays, shared by the direct renderer
(``rlhf_tf.render.raymarch``, whose docstring gives the optics), the ray
cache's build (``rlhf_tf.render.cache_sampling``) and the naive reference
(``rlhf_tf.render.raymarch_naive``): sampling rays through the packed
volume, shading and compositing classified samples, and mapping a
per-tile function over rays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import compositing, preintegration, safe_math
from rlhf_tf.render.histogram import JHAxes
from rlhf_tf.render.render_settings import RenderSettings
from rlhf_tf.render.sampling import (
    grid_start,
    intersect_box,
    segment_span,
    trilinear_packed,
)


def sample_rays(
    packed,
    shape,
    spacing,
    axes: JHAxes,
    origins,
    directions,
    phase,
    num: int,
    settings: RenderSettings,
    labels_flat=None,
    first=0,
):
  """Samples rays through the volume (everything that does not depend on the
  TF).

  Args:
    packed: [Z, Y, X, 4] from pack_volume (HU, gradient in HU/mm).
    shape, spacing: static (Z, Y, X) and mm.
    origins, directions: [..., 3] world rays (unit directions).
    phase: [...] depth-grid phase in [0, 1) of each ray (pixel_phase).
    num: static sample count S.
    labels_flat: optional [Z * Y * X] integer label per voxel (e.g. tissue
      groups), looked up at the nearest voxel of each sample.
    first: index of the first sample (int, may be traced): samples first ..
      first + S - 1 of each ray.

  Returns:
    dict of [..., S] arrays: x, y (JH coordinates), seg (segment length mm),
    with shading on, diffuse / specular headlight factors (from the
    gradient's structure tensor with settings.tensor_normals), and with
    labels_flat, 'label' (nearest-voxel label). Point sampling: sample i is
    segment i's midpoint. settings.preintegrate: sample i is segment i's
    front end (sampling.segment_ends), 'slope' is dx / dt (1/mm, the exact
    derivative of the trilinear field along the ray), and every field but
    seg and label is also sampled at segment i's midpoint, under name +
    '_mid' [..., S]
    (preintegration.sample_depths; seg i is the segment from end i to end
    i + 1, so S ends bound S - 1 whole segments).
  """
  lo, hi = camera_lib.volume_box(shape, spacing)
  t0, t1 = intersect_box(origins, directions, lo, hi)
  start = grid_start(t0, settings.step_mm, phase)
  length = jnp.maximum(t1 - t0, 0.0)
  if settings.preintegrate:
    depth, seg = preintegration.sample_depths(
        start, length, num, settings.step_mm, first
    )
  else:
    seg, depth = segment_span(start, length, num, settings.step_mm, first)
  t = (t0 - start)[..., None] + depth
  points = origins[..., None, :] + t[..., None] * directions[..., None, :]
  coords = points / jnp.asarray(spacing, points.dtype)
  view = directions[..., None, :]
  eps = settings.normal_eps * axes.grad_max
  tensor = settings.shading and settings.tensor_normals
  # Pre-integration reconstructs the intensity between samples from their
  # exact slopes along the ray (preintegration.extremum).
  tangent = None
  if settings.preintegrate:
    tangent = jnp.broadcast_to(
        (directions / jnp.asarray(spacing, directions.dtype))[..., None, :],
        coords.shape,
    )
  sampled = trilinear_packed(
      packed.reshape(-1, 4),
      shape,
      coords,
      view_dir=view if tensor else None,
      tangent=tangent,
  )
  val = sampled['values']
  hu, grad = val[..., 0], val[..., 1:]
  grad_norm = safe_math.floored_norm(grad)
  out = dict(x=axes.hu_to_x(hu), y=axes.grad_to_y(grad_norm), seg=seg)
  if settings.preintegrate:  # dx / dt (1/mm).
    out['slope'] = sampled['slope'] / (axes.hu_max - axes.hu_min)
  if tensor:
    out['diffuse'], out['specular'] = compositing.tensor_headlight_terms(
        sampled['q'], sampled['trace'], settings.shininess, eps
    )
  elif settings.shading:
    out['diffuse'], out['specular'] = compositing.headlight_terms(
        grad, view, settings.shininess, eps
    )
  if labels_flat is not None:
    out['label'] = nearest_label(labels_flat, shape, coords)
  if settings.preintegrate:
    out = preintegration.split_midpoints(out)
  return out


def nearest_label(labels_flat, shape, coords):
  """[...] label of the voxel nearest to continuous voxel coords [..., 3]."""
  flat = 0
  for a, stride in enumerate((shape[1] * shape[2], shape[2], 1)):
    i = jnp.clip(jnp.round(coords[..., a]), 0, shape[a] - 1).astype(jnp.int32)
    flat = flat + i * stride
  return labels_flat.at[flat].get(mode='promise_in_bounds')


def shade_and_composite(rgba, samples, settings: RenderSettings):
  """[..., S, 4] classified samples -> (premultiplied rgb [..., 3],
  acc [...])."""
  rgb = rgba[..., :3]
  if settings.shading:
    rgb = compositing.shade(
        rgb,
        samples['diffuse'],
        samples['specular'],
        settings.ambient,
        settings.diffuse,
        settings.specular,
    )
  log_trans = compositing.opacity_log_transmittance(
      rgba[..., 3], samples['seg'], settings.reference_step_mm
  )
  return compositing.composite_log(rgb, log_trans)


def map_tiles(fn, args, tile: int, checkpoint: bool = True):
  """Applies fn to leading-axis tiles of ``args`` (pytree of [N, ...]) with
  lax.map over jax.checkpoint(fn); returns the outputs [N, ...]."""
  n = jax.tree_util.tree_leaves(args)[0].shape[0]
  tile = max(1, min(int(tile), n))
  n_tiles = -(-n // tile)
  pad = n_tiles * tile - n

  def split(a):
    a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), mode='edge')
    return a.reshape((n_tiles, tile) + a.shape[1:])

  body = jax.checkpoint(fn) if checkpoint else fn
  out = jax.lax.map(body, jax.tree_util.tree_map(split, args))
  return jax.tree_util.tree_map(
      lambda a: a.reshape((n_tiles * tile,) + a.shape[2:])[:n], out
  )
