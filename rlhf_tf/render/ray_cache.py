"""Ray-sample cache: re-render a fixed view under many transfer functions.

For a fixed volume, camera and step, everything a sample contributes except
its TF value is independent of the TF: the JH position (x, y) of each grid
point, the headlight shading factors and the segment lengths.
``build_ray_cache`` samples the volume once at the grid points of every ray
(``raymarch.sample_points``, the same fixed grid as the direct renderer:
``sampling.ray_grid``) and stores per grid point

  x, y    float32 JH coordinates (interpolated along each segment at render
          time: pre-integrated classification, see raymarch)
  d, s    uint16  diffuse |n . l| and specular |n . l|^shininess (shading on)

(12 bytes per point with shading, 8 without) plus per ray the grid (start,
chord length, ray step; float32) and pixel index. ``render_cached`` is then
per classification point one 16-value gather (the 2x2 bin neighbourhood,
see ``sampling.corner_table``), bilinear weights, shading and compositing.

RENDERING: ``rlhf_tf.render.cached_march`` walks all rays of a bucket one
segment at a time (fields stored point-major, [S + 1, R]), forward and, for
d image / d TF table, by a hand-written adjoint that re-walks the rays.
Memory of both: [R] carries per bucket, whatever the sample count.

EXACT SAMPLE COMPACTION: segments outside the volume box are empty for every
TF, so the cache keeps, per ray, only the segments from the grid point at
or before the box entry to the exit, and drops rays that miss the box (they
show the background). Rays are sorted by segment count and cut into
buckets of one chunk of rays each (``BUILD_CHUNK``, fewer for small images;
several when there are more than ``num_buckets`` chunks); each bucket
is padded to the size class (``padded_count``) of its own longest ray, so a
new view, or a new scene of the same volume size, reuses the compiled
sampling and marching code (``cached_march.bucket_rgba`` is jitted per bucket
shape) instead of compiling per view. This is exact -- the cached
image differs from ``raymarch.render`` only by the fixed-point shading
factors, early ray termination there and float32 rounding (max abs
difference ~1e-4 on [0, 1] RGBA). Samples in air are kept: a TF may make air
visible, so a cache (unlike the direct renderer) does not skip empty space.
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np

from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.render import cached_march
from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import raymarch
from rlhf_tf.render import sampling
from rlhf_tf.render.histogram import JHAxes


@flax.struct.dataclass
class CacheBucket:
  """Rays with similar sample counts: R rays x S samples, sample-major."""

  pixels: jnp.ndarray  # [R] int32 flat pixel index; H * W for padding rays.
  start: jnp.ndarray  # [R] float32 box entry - grid point 0 (mm).
  length: jnp.ndarray  # [R] float32 chord length in the box (mm), 0: pad.
  ray_step: jnp.ndarray  # [R] float32 distance between grid points (mm).
  x: jnp.ndarray  # [S + 1, R] float32 JH intensity coordinate.
  y: jnp.ndarray  # [S + 1, R] float32 JH gradient coordinate.
  diffuse: Optional[jnp.ndarray] = None  # [S + 1, R] uint16 or None.
  specular: Optional[jnp.ndarray] = None  # [S + 1, R] uint16 or None.
  label: Optional[jnp.ndarray] = None  # [S + 1, R] uint8 label or None.


@flax.struct.dataclass
class RayCache:
  """The TF-independent part of a rendering (see the module docstring)."""

  buckets: tuple  # of CacheBucket
  height: int = flax.struct.field(pytree_node=False)
  width: int = flax.struct.field(pytree_node=False)
  bins: tuple = flax.struct.field(pytree_node=False)  # (bins_y, bins_x)
  step_mm: float = flax.struct.field(pytree_node=False)
  shading: bool = flax.struct.field(pytree_node=False)
  shininess: float = flax.struct.field(pytree_node=False)
  normal_eps: float = flax.struct.field(pytree_node=False)

  @property
  def num_samples(self) -> int:
    """Stored grid points (padding included)."""
    return int(sum(b.x.size for b in self.buckets))

  @property
  def nbytes(self) -> int:
    return int(sum(x.nbytes for x in jax.tree_util.tree_leaves(self)))


_DEFAULT_SETTINGS = raymarch.RenderSettings()
BUILD_CHUNK = 4096  # Rays per compiled sampling call (at most).


def padded_count(n: int) -> int:
  """The size class of a bucket's segment count: n rounded up to a quarter
  of its power of two (at most 25 % padding, 8 at least), so few distinct
  loop lengths exist across views and scenes."""
  n = max(int(n), 8)
  quantum = 1 << max(n.bit_length() - 3, 0)
  return -(-n // quantum) * quantum


@functools.partial(jax.jit, static_argnames=('shape', 'spacing', 'axes',
                                             'num', 'settings'))
def _sample_chunk(packed, labels_flat, origins, directions, t_first,
                  ray_step, shape, spacing, axes, num, settings):
  """Grid points 0 .. num of BUILD_CHUNK rays: fields [num + 1, rays]."""

  def tile_fn(rays):
    o, d, t0, rs = rays
    index = jnp.broadcast_to(jnp.arange(num + 1), o.shape[:1] + (num + 1,))
    pts = sampling.grid_points(o, d, (t0, rs), index)
    s = raymarch.sample_points(packed, shape, spacing, axes, pts, d, settings,
                               labels_flat=labels_flat)
    out = dict(x=s['x'].astype(jnp.float32), y=s['y'].astype(jnp.float32))
    if settings.shading:
      out['diffuse'] = cached_march.quantise(s['diffuse'])
      out['specular'] = cached_march.quantise(s['specular'])
    if labels_flat is not None:
      out['label'] = s['label'].astype(jnp.uint8)
    return out

  out = raymarch.map_tiles(tile_fn, (origins, directions, t_first, ray_step),
                           settings.tile_rays, checkpoint=False)
  # Point-major [S + 1, R]: the march reads contiguous rows per step.
  return {k: v.T for k, v in out.items()}


@functools.partial(jax.jit, static_argnames=('shape', 'spacing', 'axes',
                                             'num', 'settings', 'mesh'))
def _sample_chunk_on_mesh(packed, labels_flat, origins, directions, t_first,
                          ray_step, shape, spacing, axes, num, settings,
                          mesh):
  """_sample_chunk with the rays split over mesh axis 'data' (their count a
  multiple of its size); the fields come back [S + 1, R] split along R."""
  def per_device(packed, labels_flat, o, d, t0, rs):
    return _sample_chunk(packed, labels_flat, o, d, t0, rs, shape, spacing,
                         axes, num, settings)
  # check_vma=False: the sampling loops start from constant carries; nothing
  # crosses devices.
  rays = P(mesh_lib.DATA)
  return jax.shard_map(
      per_device, mesh=mesh, in_specs=(P(), P(), rays, rays, rays, rays),
      out_specs=P(None, mesh_lib.DATA), check_vma=False)(
          packed, labels_flat, origins, directions, t_first, ray_step)


@functools.partial(jax.jit, static_argnames=('shape', 'spacing', 'step_mm'))
def _rays(camera, shape, spacing, step_mm):
  origins, directions = camera_lib.generate_rays(camera)
  lo, hi = camera_lib.volume_box(shape, spacing)
  grid = sampling.ray_grid(origins, directions, camera.basis()[0], lo, hi,
                           step_mm)
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  return (flat(origins), flat(directions)) + tuple(flat(g) for g in grid)


def build_ray_cache(volume_hu, gradient, spacing, axes: JHAxes,
                    camera: camera_lib.Camera, bins,
                    settings: raymarch.RenderSettings = _DEFAULT_SETTINGS,
                    num_buckets: int = 16, labels=None, *,
                    packed=None, mesh=None) -> RayCache:
  """Samples a view once for ``render_cached``.

  Args:
    volume_hu: [Z, Y, X] HU. gradient: [Z, Y, X, 3] central_gradient (HU/mm)
      or None to compute it.
    spacing: (3,) mm. axes: JH axes. camera: the view.
    bins: TF table size, int or (bins_y, bins_x); tables passed to
      render_cached must have this size.
    settings: step_mm, shading, shininess and normal_eps are baked in;
      tile_rays sets the tile size of building.
    num_buckets: at most this many groups of rays with similar segment
      counts; each is one chunk of rays (several when there are more chunks
      than num_buckets), so bucket shapes recur across views.
    labels: optional [Z, Y, X] integer map (values < 256, e.g. tissue
      groups); each sample then stores its nearest voxel's label, for
      ``render_cached_labels``.
    packed: optional [Z, Y, X, 4] sampling.packed_volume; replaces
      volume_hu and gradient (saves memory on large volumes).
    mesh: optional jax.sharding.Mesh: each chunk's rays are sampled split
      over its 'data' axis (rlhf_tf.devices.mesh); the cache is the same.

  Returns:
    RayCache (host-independent pytree of device arrays).
  """
  spacing = tuple(float(s) for s in np.asarray(spacing).reshape(3))
  if packed is None:
    if gradient is None:
      packed = sampling.packed_volume(volume_hu, spacing)
    else:
      packed = sampling.pack_volume(volume_hu, gradient)
  shape = tuple(int(n) for n in packed.shape[:3])
  by, bx = (int(bins), int(bins)) if np.ndim(bins) == 0 else tuple(
      int(b) for b in bins)
  if min(by, bx) < 2:
    raise ValueError(f'bins must be >= 2, got {(by, bx)}')
  labels_flat = None
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != shape or labels.min() < 0 or labels.max() > 255:
      raise ValueError(f'labels must be a {shape} map of values in 0..255, '
                       f'got shape {labels.shape}, range '
                       f'{labels.min()}..{labels.max()}')
    labels_flat = jnp.asarray(labels.reshape(-1).astype(np.uint8))
  origins, directions, *grid = _rays(camera, shape, spacing,
                                     float(settings.step_mm))
  t_first, ray_step, start, length = (np.asarray(g) for g in grid)
  counts = np.where(length > 0, np.ceil((start + length) / ray_step),
                    0).astype(np.int64)
  order = np.argsort(-counts, kind='stable')
  order = order[counts[order] > 0]
  # Fixed per image size, so every view of that size reuses the compiled
  # sampling code.
  tile = max(1, int(settings.tile_rays))
  chunk = min(BUILD_CHUNK, -(-length.size // tile) * tile)
  n_chunks = -(-order.size // chunk)
  buckets = []
  for chunks in np.array_split(np.arange(n_chunks),
                               min(num_buckets, n_chunks)):
    rays = order[chunks[0] * chunk:(chunks[-1] + 1) * chunk]
    num = padded_count(counts[rays].max())
    pad = (-rays.size) % chunk
    pixels = np.concatenate([rays, np.full(pad, length.size)]).astype(
        np.int32)
    take = np.concatenate([rays, np.full(pad, rays[0])])
    real = pixels < length.size
    parts = []
    for c in range(0, take.size, chunk):
      sel = take[c:c + chunk]
      args = (origins[sel], directions[sel], jnp.asarray(t_first[sel]),
              jnp.asarray(ray_step[sel]))
      if mesh_lib.data_size(mesh) > 1:
        args = [mesh_lib.pad_leading(a, mesh_lib.data_size(mesh))
                for a in args]
        part = _sample_chunk_on_mesh(packed, labels_flat, *args, shape,
                                     spacing, axes, num, settings, mesh)
        parts.append({k: v[:, :sel.size] for k, v in part.items()})
      else:
        parts.append(_sample_chunk(packed, labels_flat, *args, shape,
                                   spacing, axes, num, settings))
    data = {k: jnp.concatenate([p[k] for p in parts], axis=1)
            for k in parts[0]}
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    buckets.append(CacheBucket(
        pixels=jnp.asarray(pixels), start=f32(start[take]),
        length=f32(np.where(real, length[take], 0.0)),
        ray_step=f32(ray_step[take]), **data))
  return RayCache(buckets=tuple(buckets), height=camera.height,
                  width=camera.width, bins=(by, bx), step_mm=settings.step_mm,
                  shading=settings.shading, shininess=settings.shininess,
                  normal_eps=settings.normal_eps)


def _check(cache: RayCache, tf_table, settings):
  if tuple(tf_table.shape[-3:-1]) != cache.bins or tf_table.shape[-1] != 4:
    raise ValueError(f'tf_table {tf_table.shape} does not match the cache '
                     f'bins {cache.bins} (+ RGBA)')
  baked = dict(step_mm=cache.step_mm, shading=cache.shading,
               shininess=cache.shininess, normal_eps=cache.normal_eps)
  for k, v in baked.items():
    if cache.shading or k in ('step_mm', 'shading'):
      if getattr(settings, k) != v:
        raise ValueError(f'settings.{k}={getattr(settings, k)} differs from '
                         f'the cache ({v}); rebuild the cache')


def render_cached(cache: RayCache, tf_table,
                  settings: raymarch.RenderSettings = _DEFAULT_SETTINGS):
  """Renders a cached view with a TF table (jitted, vmappable over tables,
  differentiable w.r.t. the table).

  Args:
    cache: from build_ray_cache (same step / shading settings).
    tf_table: [bins_y, bins_x, 4] RGBA in [0, 1] (alpha per reference step).
    settings: ambient, diffuse, specular, background, reference_step_mm and
      tile_rays are applied here; step_mm, shading, shininess and normal_eps
      must equal the cache's (ValueError otherwise).

  Returns:
    [H, W, 4] RGBA in [0, 1], equal to raymarch.render() within ~1e-4.
  """
  _check(cache, tf_table, settings)
  image = cached_march.cached_image(cache, tf_table, settings)
  return image.reshape(tf_table.shape[:-3] + (cache.height, cache.width, 4))


def render_cached_labels(cache: RayCache, tf_table, num_labels: int,
                         settings: raymarch.RenderSettings = _DEFAULT_SETTINGS):
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
  if any(b.label is None for b in cache.buckets):
    raise ValueError('the ray cache was built without labels; pass '
                     'labels= to build_ray_cache')
  image, weights, hits = cached_march.cached_labels(cache, tf_table, settings,
                                                    int(num_labels))
  shape = (cache.height, cache.width)
  return (image.reshape(shape + (4,)),
          weights.reshape(shape + (int(num_labels),)),
          hits.reshape(shape + (int(num_labels),)))
