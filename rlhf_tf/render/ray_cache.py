"""Ray-sample cache: re-render a fixed view under many transfer functions.

For a fixed volume, camera and step, everything a sample contributes except
its TF value is independent of the TF: the JH lookup position (x, y), the
headlight shading factors and the segment length. ``build_ray_cache`` samples
the volume once (the same ``ray_samples.sample_rays`` as the direct renderer)
and stores per sample

  idx     int32   flat index iy * bins_x + ix of the lookup's lower-left bin
  fx, fy  uint16  bilinear weights in [0, 1], fixed point (step 1 / 65535)
  d, s    uint16  diffuse |n . l| and specular |n . l|^shininess (shading on)

(12 bytes per sample with shading, 8 without) -- with settings.preintegrate
instead of idx, fx, fy the float32 lookup coordinates u, v of
``preintegration.coords`` and the slope du / dt (``coord_slope``) at the
S + 1 segment ends and, in the same row, u, v, du (and d, s) at the
midpoint of the segment that starts there (32 bytes per row with shading,
24 without, one more row; rendered by
``rlhf_tf.render.cached_segments``, on CPU by its native twin
``cached_native_segments``, which skips blocks of 16 segments and single
ones by their (u, v) boxes: ``native_block_boxes``, ``native_segment_boxes``,
4 more bytes per row) -- plus per ray the chord length, the
offset of the box entry past the depth grid (float32, see
``sampling.grid_start``) and pixel index. ``cached_render.render_cached`` is
then one 16-value gather per sample (the 2x2 bin neighbourhood, see
``sampling.corner_table``), bilinear weights, shading and compositing.

EXACT SAMPLE COMPACTION: samples outside the volume box are empty for every
TF, so the cache keeps, per ray, only the ceil((start + length) / step)
samples inside the box (the depth grid's first segment may be partial), and
drops rays that miss the box (they show the background). Rays are sorted by
sample count and cut into tiles of ``settings.cache_tile_rays``; each tile keeps
whole chunks of CHUNK rows up to its own longest ray, in one pool
(``CacheTiles``); the march walks only up to that ray's last sample
(``CacheTiles.num_steps``: on Cranium 256^2, 12 % less CPU time for the
forward and 6 % for the gradient than walking whole chunks). On CPU (no
labels) the tiles are then cut into tiles of 16 rays, each to its own
longest ray (``native_layout``: the native marches' memory layout). This is
exact -- the cached image differs from
``raymarch.render`` (with its skipping and termination off) only by the
fixed-point weights and float32 rounding (max abs difference 1e-5 .. 1e-4
on [0, 1] RGBA; a TF with jumps between adjacent bins amplifies rounding of
the sample positions the most).
Samples in air are kept: a TF may make air visible.

NO RECOMPILATION PER VIEW: the cache's array shapes are [H * W / tile]
tiles and a pool whose capacity is rounded up to one of POOL_STEPS sizes
(``pool_chunks``), so a new view of a scene almost always has the shapes of
an earlier one and ``render_cached``, ``render_cached_labels``, their
gradients and ``many_actions`` reuse its compiled programs (a bucketed
cache compiled them anew for every view: 14-39 s under load). The build
itself runs one compiled program (``cache_sampling._sample_chunk``) for every
view; on CPU a pre-integrated cache is sampled by numba instead, straight
into its narrow tiles (``native_cache_build``).

NO EMPTY-SPACE SKIPPING when the cache is BUILT (render time: see
``rlhf_tf.render.cached_render``): it is built once per view and
re-rendered for any TF the learner, the agent or an inspector may draw, and
a polygon may cover any part of the JH (air included), so no sample is
empty for every TF. (Skipping against the union of a known set of TFs
would be sound, but no caller knows its TFs in advance.) The direct
renderer, which sees its one TF, skips (``rlhf_tf.render.empty_space``).

Rendering the cache: ``rlhf_tf.render.cached_render``.
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.render import (
    cache_sampling,
    native_cache_build,
    native_clear_blocks,
    native_layout,
    native_segment_boxes,
    sampling,
)
from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render.histogram import JHAxes
from rlhf_tf.render.render_settings import RenderSettings


@flax.struct.dataclass
class CacheTiles:
  """The cached rays in tiles of ``tile`` rays and their samples in a pool of
  row chunks: tile t's rows are pool rows first_chunk[t] * CHUNK .. +
  num_chunks[t] * CHUNK - 1 (row i = sample i, or segment end i with
  pre-integration), [rows, tile] sample-major. Shapes depend only on the
  image size, tile size and pool capacity (``pool_chunks``), not the view."""

  pixels: jnp.ndarray  # [T, tile] int32 flat pixel index; H * W = padding.
  length: jnp.ndarray  # [T, tile] float32 chord length in the box (mm).
  start: jnp.ndarray  # [T, tile] float32 box entry past its grid point (mm).
  first_chunk: jnp.ndarray  # [T] int32 the tile's first pool chunk.
  num_chunks: jnp.ndarray  # [T] int32 its chunks (0: an unused tile).
  # [T] int32 samples (segments) of the tile's longest ray: the march walks
  # rows first_chunk[t] * CHUNK .. + num_steps[t] - 1 (+ 1 end row with
  # pre-integration); the rest of the last chunk is never read.
  num_steps: Optional[jnp.ndarray] = None
  # Point sampling: the bilinear lookup of each sample (segment midpoint).
  idx: Optional[jnp.ndarray] = None  # [N, tile] int32 flat TF-bin index.
  fx: Optional[jnp.ndarray] = None  # [N, tile] uint16 fixed-point weight, x.
  fy: Optional[jnp.ndarray] = None  # [N, tile] uint16 fixed-point weight, y.
  # Pre-integration: preintegration.coords (u, v) and coord_slope du of
  # the segment ends and (u_mid, v_mid, du_mid, diffuse_mid, specular_mid)
  # of the midpoint of the segment that starts at each.
  u: Optional[jnp.ndarray] = None  # [N, tile] float32 intensity (bins).
  v: Optional[jnp.ndarray] = None  # [N, tile] float32 gradient (bins).
  u_mid: Optional[jnp.ndarray] = None  # [N, tile] float32.
  v_mid: Optional[jnp.ndarray] = None  # [N, tile] float32.
  du: Optional[jnp.ndarray] = None  # [N, tile] float32 du / dt (bins/mm).
  du_mid: Optional[jnp.ndarray] = None  # [N, tile] float32.
  diffuse: Optional[jnp.ndarray] = None  # [N, tile] uint16 or None.
  specular: Optional[jnp.ndarray] = None  # [N, tile] uint16 or None.
  diffuse_mid: Optional[jnp.ndarray] = None  # [N, tile] uint16 or None.
  specular_mid: Optional[jnp.ndarray] = None  # [N, tile] uint16 or None.
  label: Optional[jnp.ndarray] = None  # [N, tile] uint8 label or None.
  # Pre-integration in narrow tiles: per ray and block of BLOCK segments,
  # the (u, v) bins they can read (native_block_boxes; the native march
  # skips blocks the TF leaves clear). [N // BLOCK, tile, 4] uint16.
  box: Optional[jnp.ndarray] = None
  # Per segment (pool row), the bins it can read in bytes [N, tile] uint32
  # (native_segment_boxes; None: none stored).
  seg_box: Optional[jnp.ndarray] = None
  # With them, each block's TF-independent cotangent weights for when the
  # TF leaves it clear (native_clear_blocks; the adjoint scatters them):
  # span [N // BLOCK, tile, 2] int32 (first entry, count; -1: walk it),
  # entries' keys [E] int32 and weights [E, 3 or 1] (E: capacity, not
  # view-dependent). Built from the fields: rebuild them with the box.
  clear_span: Optional[jnp.ndarray] = None
  clear_key: Optional[jnp.ndarray] = None
  clear_weight: Optional[jnp.ndarray] = None

  @property
  def rows(self) -> jnp.ndarray:
    """The [N, tile] pool field that every cache has."""
    return self.idx if self.u is None else self.u


@flax.struct.dataclass
class RayCache:
  """The TF-independent part of a rendering (see the module docstring)."""

  tiles: CacheTiles
  height: int = flax.struct.field(pytree_node=False)
  width: int = flax.struct.field(pytree_node=False)
  bins: tuple = flax.struct.field(pytree_node=False)  # (bins_y, bins_x)
  step_mm: float = flax.struct.field(pytree_node=False)
  shading: bool = flax.struct.field(pytree_node=False)
  shininess: float = flax.struct.field(pytree_node=False)
  normal_eps: float = flax.struct.field(pytree_node=False)
  jitter: bool = flax.struct.field(pytree_node=False, default=False)
  preintegrate: bool = flax.struct.field(pytree_node=False, default=False)
  tensor_normals: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def num_samples(self) -> int:
    """Stored samples (pool capacity, padding included)."""
    return int(self.tiles.rows.size)

  @property
  def num_used_samples(self) -> int:
    """Samples of the tiles' chunks (each tile padded to whole chunks)."""
    return (
        int(np.sum(np.asarray(self.tiles.num_chunks)))
        * CHUNK
        * int(self.tiles.rows.shape[1])
    )

  @property
  def nbytes(self) -> int:
    return int(sum(x.nbytes for x in jax.tree_util.tree_leaves(self)))


# Rows per pool chunk: the cache build samples a tile CHUNK rows per call
# (_sample_chunk: one compiled program for every view) and a tile keeps
# whole chunks (up to CHUNK - 1 rows past its longest ray, transparent).
CHUNK = cache_sampling.CHUNK
# The pool's capacity is rounded up to a multiple of 1 / POOL_STEPS of the
# largest pool an image of this size can need, so that views of a scene
# share one shape and so one compiled march (pool_chunks).
POOL_STEPS = 16


def pool_chunks(used: int, most: int) -> int:
  """Pool capacity in chunks for ``used`` chunks out of at most ``most``: the
  next multiple of ceil(most / POOL_STEPS) (at most POOL_STEPS shapes per
  image size, step and volume; a view after the first rarely adds one)."""
  quantum = max(1, -(-int(most) // POOL_STEPS))
  return max(quantum, -(-int(used) // quantum) * quantum)


def build_ray_cache(
    volume_hu,
    gradient,
    spacing,
    axes: JHAxes,
    camera: camera_lib.Camera,
    bins,
    settings: RenderSettings = (RenderSettings()),
    num_buckets: int = 8,
    labels=None,
    *,
    packed=None,
    mesh=None,
    narrow=None,
) -> RayCache:
  """Samples a view once for ``render_cached``.

  Args:
    volume_hu: [Z, Y, X] HU. gradient: [Z, Y, X, 3] central_gradient (HU/mm)
      or None to compute it.
    spacing: (3,) mm. axes: JH axes. camera: the view.
    bins: TF table size, int or (bins_y, bins_x); tables passed to
      render_cached must have this size.
    settings: step_mm, shading, shininess, normal_eps and tensor_normals
      are baked in; cache_tile_rays sets the tile size of both building and
      rendering.
    num_buckets: ignored (kept for callers: the cache no longer groups rays
      into buckets, see CacheTiles).
    labels: optional [Z, Y, X] integer map (values < 256, e.g. tissue
      groups); each sample then stores its nearest voxel's label, for
      ``render_cached_labels``.
    packed: optional [Z, Y, X, 4] sampling.packed_volume; replaces
      volume_hu and gradient (saves memory on large volumes).
    mesh: optional jax.sharding.Mesh: each tile's rays are split over its
      'data' axis (every device holds the packed volume and samples its
      share of the rays; the same cache, gathered into the host pool).
    narrow: store the pool in tiles of native_layout.GROUP rays (the layout
      the native march walks fastest; every march renders both); None:
      where the native march renders it (native_layout.wanted).

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
  by, bx = (
      (int(bins), int(bins))
      if np.ndim(bins) == 0
      else tuple(int(b) for b in bins)
  )
  if min(by, bx) < 2:
    raise ValueError(f'bins must be >= 2, got {(by, bx)}')
  labels_flat = None
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != shape or labels.min() < 0 or labels.max() > 255:
      raise ValueError(
          f'labels must be a {shape} map of values in 0..255, '
          f'got shape {labels.shape}, range '
          f'{labels.min()}..{labels.max()}'
      )
    labels_flat = jnp.asarray(labels.reshape(-1).astype(np.uint8))
  origins, directions, phase, length, start = cache_sampling.chords(
      camera, shape, spacing, settings.step_mm, settings.jitter
  )
  length_np, start_np = np.asarray(length), np.asarray(start)
  origins_np, directions_np, phase_np = (
      np.asarray(origins),
      np.asarray(directions),
      np.asarray(phase),
  )
  s_max = sampling.num_samples(shape, spacing, settings.step_mm)
  counts = np.minimum(
      np.ceil((start_np + length_np) / settings.step_mm - 1e-6), s_max
  ).astype(np.int64)
  counts[length_np <= 0] = 0
  # Pre-integration samples both ends of each ray's segments.
  extra = int(settings.preintegrate)
  order = np.argsort(-counts, kind='stable')
  order = order[counts[order] > 0]
  n_pix = length_np.size
  tile = max(1, min(int(settings.cache_tile_rays), n_pix))
  n_tiles = -(-n_pix // tile)  # Capacity: every pixel's ray.
  used = -(-order.size // tile)
  pixels = np.full((n_tiles, tile), n_pix, np.int32)
  pixels.reshape(-1)[: order.size] = order
  real = pixels < n_pix
  take = np.where(real, pixels, pixels[:, :1])  # Padding: the tile's first.
  take = np.where(take < n_pix, take, 0)
  ray_len = np.where(real, length_np[take], 0.0).astype(np.float32)
  ray_start = np.where(real, start_np[take], 0.0).astype(np.float32)
  num_chunks = np.zeros(n_tiles, np.int32)
  # Rays are sorted by count: a tile's first ray is its longest.
  num_steps = np.zeros(n_tiles, np.int32)
  num_steps[:used] = counts[pixels[:used, 0]]
  num_chunks[:used] = -(-(num_steps[:used] + extra) // CHUNK)
  first_chunk = (np.cumsum(num_chunks) - num_chunks).astype(np.int32)
  capacity = pool_chunks(
      max(int(num_chunks.sum()), _view_bound(camera, shape, spacing, settings)),
      n_tiles * -(-(s_max + extra) // CHUNK),
  )
  if narrow is None:
    narrow = native_layout.wanted(settings, labels is not None)
  if narrow:  # Each wide tile's rows go straight into its narrow tiles.
    where = native_layout.plan(
        np.where(real, counts[take], 0), num_steps, extra
    )
    pool_shape = (capacity * CHUNK * where.per, native_layout.GROUP)
  else:
    pool_shape = (capacity * CHUNK, tile)
  # On CPU a pre-integrated cache is sampled natively, straight into its
  # narrow tiles (native_cache_build: ~10x less time than the XLA build).
  native = native_cache_build.wanted(
      settings, narrow, labels is not None, mesh_lib.data_size(mesh)
  )
  pool = None
  if native:
    pool = native_cache_build.sample_pool(
        packed,
        origins_np,
        directions_np,
        phase_np,
        native_layout.narrow_rays(pixels, n_pix),
        where,
        pool_shape,
        spacing,
        axes,
        (by, bx),
        settings,
        (camera.height, camera.width),
    )
  for t in range(0 if native else used):
    rows = int(num_chunks[t]) * CHUNK
    if mesh_lib.data_size(mesh) > 1:
      split = mesh_lib.padded_size(tile, mesh_lib.data_size(mesh))
      take_all = mesh_lib.pad_leading(take[t], split)
      data = cache_sampling.sample_bucket_on_mesh(
          packed,
          labels_flat,
          origins[take_all],
          directions[take_all],
          phase[take_all],
          shape,
          spacing,
          axes,
          rows,
          (by, bx),
          settings,
          mesh,
      )
      data = {k: mesh_lib.to_host(v)[:, :tile] for k, v in data.items()}
    else:
      data = cache_sampling.sample_tile_chunks(
          packed,
          labels_flat,
          origins_np[take[t]],
          directions_np[take[t]],
          phase_np[take[t]],
          int(num_chunks[t]),
          shape,
          spacing,
          axes,
          (by, bx),
          settings,
      )
    if pool is None:
      pool = {k: np.zeros(pool_shape, v.dtype) for k, v in data.items()}
    row0 = int(first_chunk[t]) * CHUNK
    for k, v in data.items():
      if narrow:
        native_layout.put(pool[k], v, t, where)
      else:
        pool[k][row0 : row0 + rows] = v
  if pool is None:  # No ray meets the box: an empty pool of the right kind.
    names = cache_sampling.field_names(settings, labels_flat is not None)
    pool = {k: np.zeros(pool_shape, dt) for k, dt in names.items()}
  if narrow:
    pixels = native_layout.narrow_rays(pixels, n_pix)
    ray_len = native_layout.narrow_rays(ray_len, 0.0)
    ray_start = native_layout.narrow_rays(ray_start, 0.0)
    first_chunk, num_chunks, num_steps = (
        where.first_chunk,
        where.num_chunks,
        where.num_steps,
    )
  if narrow and settings.preintegrate:  # For the native march (CPU).
    first_row = np.asarray(first_chunk) * CHUNK
    pool['box'], pool['seg_box'] = native_segment_boxes.both(
        pool, ray_start, ray_len, first_row, num_steps, settings.step_mm,
        (by, bx),
    )  # fmt: skip
    pool.update(
        native_clear_blocks.of_pool(
            pool,
            first_chunk,
            num_steps,
            ray_start,
            ray_len,
            settings.step_mm,
            (by, bx),
        )
    )
  # jax.device_put wraps a 64-byte aligned numpy pool (native_cache_build's)
  # without a copy and copies any other into a buffer of XLA's own.
  tiles = CacheTiles(
      pixels=jnp.asarray(pixels),
      length=jnp.asarray(ray_len),
      start=jnp.asarray(ray_start),
      first_chunk=jnp.asarray(first_chunk),
      num_chunks=jnp.asarray(num_chunks),
      num_steps=jnp.asarray(num_steps),
      **{k: jax.device_put(v) for k, v in pool.items() if v is not None},
  )
  return RayCache(
      tiles=tiles,
      height=camera.height,
      width=camera.width,
      bins=(by, bx),
      step_mm=settings.step_mm,
      shading=settings.shading,
      shininess=settings.shininess,
      normal_eps=settings.normal_eps,
      jitter=settings.jitter,
      preintegrate=settings.preintegrate,
      tensor_normals=settings.tensor_normals,
  )


def _view_bound(camera, shape, spacing, settings) -> int:
  """Pool chunks enough for any view of an orthographic camera of this
  image size and width (0 for perspective ones): rays meet the box along
  chords whose lengths add up to at most box volume / pixel area, so the
  samples add up to that / step plus two partial ones per ray, and each
  tile pads about one chunk (rays sorted by length, whole chunks). Sizing the
  pool by it gives every view of a scene the same shapes."""
  if camera.projection != 'orthographic':
    return 0
  width_mm = float(np.asarray(camera.ortho_width_mm))
  pixel_mm2 = (width_mm / camera.width) ** 2
  box_mm3 = float(np.prod(np.asarray(shape) * np.asarray(spacing)))
  n_pix = camera.height * camera.width
  tile = max(1, min(int(settings.cache_tile_rays), n_pix))
  samples = box_mm3 / pixel_mm2 / settings.step_mm + 2 * n_pix
  return int(np.ceil(samples / (CHUNK * tile))) + -(-n_pix // tile)
