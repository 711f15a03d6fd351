"""The ray cache's sampling programs (``rlhf_tf.render.ray_cache``): each
ray's chord through the volume box, and the stored fields of a tile of
rays, CHUNK rows per call (one compiled program for every view) or a whole
tile split over a device mesh, and the pool they fill (``sample_pool``)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np

from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.render import (
    cached_march,
    native_layout,
    preintegration,
    ray_samples,
    sampling,
)
from rlhf_tf.render import camera as camera_lib

# Rows per pool chunk (ray_cache.CHUNK).
CHUNK = cached_march.CHUNK


def _cache_fields(
    packed,
    labels_flat,
    o,
    d,
    p,
    shape,
    spacing,
    axes,
    num,
    bins,
    settings,
    first=0,
):
  """The stored fields [rays, num] of samples first .. first + num - 1."""
  by, bx = bins
  s = ray_samples.sample_rays(
      packed,
      shape,
      spacing,
      axes,
      o,
      d,
      p,
      num,
      settings,
      labels_flat=labels_flat,
      first=first,
  )
  ends = ('', '_mid') if settings.preintegrate else ('',)
  if settings.preintegrate:
    out = {}
    for sfx in ends:
      u, v = preintegration.coords(s['x' + sfx], s['y' + sfx], bx, by)
      du = preintegration.coord_slope(s['x' + sfx], s['slope' + sfx], bx)
      out['u' + sfx] = u.astype(jnp.float32)
      out['v' + sfx] = v.astype(jnp.float32)
      out['du' + sfx] = du.astype(jnp.float32)
  else:
    idx, fx, fy = sampling.tf_coords(s['x'], s['y'], bx, by)
    out = dict(
        idx=idx, fx=cached_march.quantise(fx), fy=cached_march.quantise(fy)
    )
  if settings.shading:
    for k in ('diffuse', 'specular'):
      for sfx in ends:
        out[k + sfx] = cached_march.quantise(s[k + sfx])
  if labels_flat is not None:
    out['label'] = s['label'].astype(jnp.uint8)
  return out


@functools.partial(
    jax.jit,
    static_argnames=('shape', 'spacing', 'axes', 'num', 'bins', 'settings'),
)
def _sample_bucket(
    packed,
    labels_flat,
    origins,
    directions,
    phase,
    shape,
    spacing,
    axes,
    num,
    bins,
    settings,
):
  """Fields [S, R] of rays [R] in one program (compiled per S: the mesh
  path, one tile at a time)."""

  def tile_fn(rays):
    return _cache_fields(
        packed, labels_flat, *rays, shape, spacing, axes, num, bins, settings
    )

  out = ray_samples.map_tiles(
      tile_fn,
      (origins, directions, phase),
      settings.tile_rays,
      checkpoint=False,
  )
  # Sample-major [S, R]: the forward march reads one contiguous row per step.
  return {k: v.T for k, v in out.items()}


@functools.partial(
    jax.jit, static_argnames=('shape', 'spacing', 'axes', 'bins', 'settings')
)
def _sample_chunk(
    packed,
    labels_flat,
    origins,
    directions,
    phase,
    first,
    shape,
    spacing,
    axes,
    bins,
    settings,
):
  """Fields [CHUNK, tile] of samples first .. first + CHUNK - 1 of one tile
  of rays [tile]: the same shapes for every view and tile."""
  out = _cache_fields(
      packed,
      labels_flat,
      origins,
      directions,
      phase,
      shape,
      spacing,
      axes,
      CHUNK,
      bins,
      settings,
      first,
  )
  return {k: v.T for k, v in out.items()}


def sample_tile_chunks(
    packed,
    labels_flat,
    origins,
    directions,
    phase,
    num_chunks: int,
    shape,
    spacing,
    axes,
    bins,
    settings,
):
  """Host fields {name: [num_chunks * CHUNK, tile]} of one tile of rays
  (host arrays [tile, 3], [tile, 3], [tile]) by _sample_chunk calls: one
  compiled program for all views and tiles."""
  parts = [
      _sample_chunk(
          packed,
          labels_flat,
          origins,
          directions,
          phase,
          np.int32(c * CHUNK),
          shape,
          spacing,
          axes,
          bins,
          settings,
      )
      for c in range(num_chunks)
  ]
  return {
      k: np.concatenate([np.asarray(p[k]) for p in parts], axis=0)
      for k in parts[0]
  }


@functools.partial(
    jax.jit,
    static_argnames=(
        'shape',
        'spacing',
        'axes',
        'num',
        'bins',
        'settings',
        'mesh',
    ),
)
def sample_bucket_on_mesh(
    packed,
    labels_flat,
    origins,
    directions,
    phase,
    shape,
    spacing,
    axes,
    num,
    bins,
    settings,
    mesh,
):
  """_sample_bucket with the rays [R] split over mesh axis 'data' (R a
  multiple of its size); the fields come back [S, R] split along R."""

  def per_device(packed, labels_flat, o, d, p):
    return _sample_bucket(
        packed, labels_flat, o, d, p, shape, spacing, axes, num, bins, settings
    )

  # check_vma=False: the march's loops start from constant carries; nothing
  # crosses devices.
  return jax.shard_map(
      per_device,
      mesh=mesh,
      in_specs=(P(), P(), P(mesh_lib.DATA), P(mesh_lib.DATA), P(mesh_lib.DATA)),
      out_specs=P(None, mesh_lib.DATA),
      check_vma=False,
  )(packed, labels_flat, origins, directions, phase)


def sample_pool(
    packed,
    labels_flat,
    rays,
    plan,
    where,
    pool_shape,
    shape,
    spacing,
    axes,
    bins,
    settings,
    mesh,
) -> dict:
  """The pool {field: pool_shape numpy} of build_ray_cache's XLA build: each
  wide tile sampled by sample_tile_chunks (or sample_bucket_on_mesh where
  the mesh's 'data' axis has more than one device), stored wide or, given
  where (a native_layout.Plan), straight into narrow tiles (the native
  twin: native_cache_build.sample_pool).

  Args:
    packed: [Z, Y, X, 4] sampling.packed_volume. labels_flat: [Z * Y * X]
      uint8 labels or None.
    rays: per-pixel (origins [H * W, 3], directions [H * W, 3], phase
      [H * W]) device arrays (``chords``).
    plan: cache_tiling.TilePlan. where: native_layout.Plan or None (wide).
    pool_shape: (rows, tile columns) of each field.
    shape, spacing, axes, bins, settings: as _sample_chunk's. mesh: a
      jax.sharding.Mesh or None.
  """
  origins, directions, phase = rays
  rays_np = [np.asarray(a) for a in rays]
  devices = mesh_lib.data_size(mesh)
  pool = None
  for t in range(plan.used):
    row0 = int(plan.first_chunk[t]) * CHUNK
    rows = int(plan.num_chunks[t]) * CHUNK
    if devices > 1:
      take = mesh_lib.pad_leading(
          plan.take[t], mesh_lib.padded_size(plan.tile, devices)
      )
      data = sample_bucket_on_mesh(
          packed,
          labels_flat,
          origins[take],
          directions[take],
          phase[take],
          shape,
          spacing,
          axes,
          rows,
          bins,
          settings,
          mesh,
      )
      data = {k: mesh_lib.to_host(v)[:, : plan.tile] for k, v in data.items()}
    else:
      data = sample_tile_chunks(
          packed,
          labels_flat,
          *[a[plan.take[t]] for a in rays_np],
          int(plan.num_chunks[t]),
          shape,
          spacing,
          axes,
          bins,
          settings,
      )
    if pool is None:
      pool = {k: np.zeros(pool_shape, v.dtype) for k, v in data.items()}
    for k, v in data.items():
      if where is None:
        pool[k][row0 : row0 + rows] = v
      else:
        native_layout.put(pool[k], v, t, where)
  if pool is None:  # No ray meets the box: an empty pool of the right kind.
    names = field_names(settings, labels_flat is not None)
    pool = {k: np.zeros(pool_shape, dt) for k, dt in names.items()}
  return pool


@functools.partial(
    jax.jit, static_argnames=('shape', 'spacing', 'step_mm', 'jitter')
)
def chords(camera, shape, spacing, step_mm, jitter):
  """Per ray [H * W]: origin, direction, depth-grid phase, chord length and
  grid_start offset of the box entry."""
  origins, directions = camera_lib.generate_rays(camera)
  lo, hi = camera_lib.volume_box(shape, spacing)
  t0, t1 = sampling.intersect_box(origins, directions, lo, hi)
  phase = sampling.pixel_phase(
      jnp.arange(camera.height * camera.width), camera.width, jitter
  )
  t0 = t0.reshape(-1)
  return (
      origins.reshape(-1, 3),
      directions.reshape(-1, 3),
      phase,
      jnp.maximum(t1.reshape(-1) - t0, 0.0),
      sampling.grid_start(t0, step_mm, phase),
  )


def field_names(settings, labels: bool) -> dict:
  """{field: dtype} of the pool for these settings (_cache_fields)."""
  ends = ('', '_mid') if settings.preintegrate else ('',)
  if settings.preintegrate:
    out = {k + sfx: np.float32 for sfx in ends for k in ('u', 'v', 'du')}
  else:
    out = dict(idx=np.int32, fx=np.uint16, fy=np.uint16)
  if settings.shading:
    out.update(
        {k + sfx: np.uint16 for sfx in ends for k in ('diffuse', 'specular')}
    )
  if labels:
    out['label'] = np.uint8
  return out
