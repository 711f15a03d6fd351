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
24 without, one more row; rendered by ``rlhf_tf.render.cached_segments``,
on CPU by its native twin ``cached_native_segments``, which skips blocks of
16 segments and single ones by their (u, v) boxes, 4 more bytes per row:
``native_skip_fields``) -- plus per ray the chord length, the offset of the
box entry past the depth grid (float32, see ``sampling.grid_start``) and
pixel index. ``cached_render.render_cached`` is then one 16-value gather
per sample (the 2x2 bin neighbourhood, see ``sampling.corner_table``),
bilinear weights, shading and compositing.

EXACT SAMPLE COMPACTION: samples outside the volume box are empty for every
TF, so the cache keeps, per ray, only the ceil((start + length) / step)
samples inside the box (the depth grid's first segment may be partial), and
drops rays that miss the box (they show the background). Rays are sorted
by sample count and cut into tiles of ``settings.cache_tile_rays``
(``cache_tiling``); each tile keeps whole chunks of CHUNK rows up to its
own longest ray, in one pool (``CacheTiles``); the march walks only up to
that ray's last sample (``CacheTiles.num_steps``: on Cranium 256^2, 12 %
less CPU time for the forward and 6 % for the gradient than walking whole
chunks). On CPU (no labels) the tiles are then cut into tiles of 16 rays,
each to its own longest ray (``native_layout``: the native marches' memory
layout). This is exact -- the cached image differs from ``raymarch.render``
(with its skipping and termination off) only by the
fixed-point weights and float32 rounding (max abs difference 1e-5 .. 1e-4
on [0, 1] RGBA; a TF with jumps between adjacent bins amplifies rounding of
the sample positions the most).
Samples in air are kept: a TF may make air visible.

NO RECOMPILATION PER VIEW: the cache's array shapes are [H * W / tile]
tiles and a pool whose capacity is rounded up to one of POOL_STEPS sizes
(``cache_tiling.pool_chunks``), so a new view of a scene almost always has
the shapes of an earlier one and ``render_cached``,
``render_cached_labels``, their gradients and ``many_actions`` reuse its
compiled programs (a bucketed cache compiled them anew for every view:
14-39 s under load). The build
itself runs one compiled program (``cache_sampling._sample_chunk``) for every
view; on CPU a cache is sampled by numba instead, straight into its narrow
tiles (``native_cache_build``, point samples ``native_point_build``).

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
    cache_tiling,
    native_cache_build,
    native_layout,
    native_point_build,
    native_skip_fields,
    pool_pages,
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
  image size, tile size and pool capacity (``cache_tiling.pool_chunks``),
  not the view."""

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
# whole chunks (up to CHUNK - 1 rows past its longest ray, transparent);
# the pool's capacity: cache_tiling.pool_chunks.
CHUNK = cache_sampling.CHUNK


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
    packed = _packed_volume(volume_hu, gradient, spacing)
  shape = tuple(int(n) for n in packed.shape[:3])
  table_bins = _table_bins(bins)
  labels_flat = _flat_labels(labels, shape)
  origins, directions, phase, length, start = cache_sampling.chords(
      camera, shape, spacing, settings.step_mm, settings.jitter
  )
  plan = cache_tiling.plan_tiles(
      length, start, camera, shape, spacing, settings
  )
  if narrow is None:
    narrow = native_layout.wanted(settings, labels is not None)
  where, pool_shape = _pool_layout(plan, narrow, settings)
  # On CPU a cache is sampled natively, straight into its narrow tiles
  # (native_cache_build, native_point_build: ~5-10x less time than the XLA
  # build).
  native = native_cache_build.wanted(
      settings, narrow, labels is not None, mesh_lib.data_size(mesh)
  )
  if native:
    builder = (
        native_cache_build if settings.preintegrate else native_point_build
    )
    pool = builder.sample_pool(
        packed,
        np.asarray(origins),
        np.asarray(directions),
        np.asarray(phase),
        native_layout.narrow_rays(plan.pixels, plan.counts.size),
        where,
        pool_shape,
        spacing,
        axes,
        table_bins,
        settings,
        (camera.height, camera.width),
    )
  else:
    pool = cache_sampling.sample_pool(
        packed,
        labels_flat,
        (origins, directions, phase),
        plan,
        where,
        pool_shape,
        shape,
        spacing,
        axes,
        table_bins,
        settings,
        mesh,
    )
  rays = _ray_fields(plan, where)
  if narrow and settings.preintegrate:  # For the native march (CPU).
    pool.update(
        native_skip_fields.of_pool(
            pool,
            rays['start'],
            rays['length'],
            rays['first_chunk'],
            rays['num_steps'],
            settings.step_mm,
            table_bins,
            # Natively built: in pages of dropped caches (pool_pages).
            pool_pages.zeros if native else np.zeros,
        )
    )
    if native:  # One spare pool's pages at most, idle until the next build.
      pool_pages.trim(sum(v.nbytes for v in pool.values() if v is not None))
  # jax.device_put wraps a 64-byte aligned numpy pool (native_cache_build's)
  # without a copy and copies any other into a buffer of XLA's own.
  tiles = CacheTiles(
      **{k: jnp.asarray(v) for k, v in rays.items()},
      **{k: jax.device_put(v) for k, v in pool.items() if v is not None},
  )
  return RayCache(
      tiles=tiles,
      height=camera.height,
      width=camera.width,
      bins=table_bins,
      step_mm=settings.step_mm,
      shading=settings.shading,
      shininess=settings.shininess,
      normal_eps=settings.normal_eps,
      jitter=settings.jitter,
      preintegrate=settings.preintegrate,
      tensor_normals=settings.tensor_normals,
  )


def _packed_volume(volume_hu, gradient, spacing):
  """[Z, Y, X, 4] sampling.packed_volume of HU and, if given, its
  gradient (else computed)."""
  if gradient is None:
    return sampling.packed_volume(volume_hu, spacing)
  return sampling.pack_volume(volume_hu, gradient)


def _pool_layout(plan, narrow: bool, settings):
  """(where, pool_shape): the native_layout.Plan of the plan's wide tiles
  cut into narrow ones (None: the pool stays wide) and the pool fields'
  (rows, columns). Narrow, each wide tile's rows go straight into its
  narrow tiles."""
  if not narrow:
    return None, (plan.capacity * CHUNK, plan.tile)
  where = native_layout.plan(
      plan.ray_counts(), plan.num_steps, int(settings.preintegrate)
  )
  return where, (plan.capacity * CHUNK * where.per, native_layout.GROUP)


def _table_bins(bins) -> tuple:
  """(bins_y, bins_x) of an int or pair, each >= 2."""
  by, bx = (
      (int(bins), int(bins))
      if np.ndim(bins) == 0
      else tuple(int(b) for b in bins)
  )
  if min(by, bx) < 2:
    raise ValueError(f'bins must be >= 2, got {(by, bx)}')
  return by, bx


def _flat_labels(labels, shape):
  """[Z * Y * X] uint8 device array of a [Z, Y, X] label map (None: None)."""
  if labels is None:
    return None
  labels = np.asarray(labels)
  if labels.shape != shape or labels.min() < 0 or labels.max() > 255:
    raise ValueError(
        f'labels must be a {shape} map of values in 0..255, '
        f'got shape {labels.shape}, range '
        f'{labels.min()}..{labels.max()}'
    )
  return jnp.asarray(labels.reshape(-1).astype(np.uint8))


_TILE_FIELDS = ('first_chunk', 'num_chunks', 'num_steps')


def _ray_fields(plan, where) -> dict:
  """CacheTiles' per-ray and per-tile fields (pixels, length, start,
  first_chunk, num_chunks, num_steps) as numpy arrays: the plan's wide tiles
  or, given where (a native_layout.Plan), its narrow ones."""
  rays = dict(pixels=plan.pixels, length=plan.length, start=plan.start)
  if where is not None:  # Padding rays: pixel H * W, empty chords.
    fill = dict(pixels=plan.counts.size, length=0.0, start=0.0)
    rays = {k: native_layout.narrow_rays(v, fill[k]) for k, v in rays.items()}
  tiles = plan if where is None else where
  return dict(rays, **{k: getattr(tiles, k) for k in _TILE_FIELDS})
