"""Which rays a ray cache keeps, in which tiles, and how large its pool is.

``ray_cache.build_ray_cache`` keeps, per ray, only the samples inside the
volume box and drops rays that miss it (EXACT SAMPLE COMPACTION in
``ray_cache``). This module plans that layout from each ray's chord, before
anything is sampled:

- each ray's sample count, ceil((start + length) / step) capped at the
  depth grid's length (0: the ray misses the box);
- the rays that meet the box, longest first, cut into tiles of
  ``settings.cache_tile_rays`` (a tile's first ray is its longest);
- each tile's rows in whole chunks of CHUNK rows (one more row with
  pre-integration: the last segment's back end), placed one tile after the
  other in one pool;
- the pool's capacity, rounded up to one of POOL_STEPS sizes
  (``pool_chunks``) and, for an orthographic camera, to the most any view
  can need (``view_bound``), so that views of a scene share array shapes
  and so compiled programs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rlhf_tf.render import cache_sampling, sampling

# Rows per pool chunk (ray_cache.CHUNK).
CHUNK = cache_sampling.CHUNK
# The pool's capacity is rounded up to a multiple of 1 / POOL_STEPS of the
# largest pool an image of this size can need, so that views of a scene
# share one shape and so one compiled march (pool_chunks).
POOL_STEPS = 16


@dataclasses.dataclass(frozen=True)
class TilePlan:
  """The layout of a cache's wide tiles (T tiles of ``tile`` rays, T =
  ceil(H * W / tile): every pixel's ray fits), host numpy arrays."""

  counts: np.ndarray  # [H * W] int64 samples (segments) of each ray.
  pixels: np.ndarray  # [T, tile] int32 flat pixel index; H * W = padding.
  # [T, tile] a valid pixel index per slot (padding: the tile's first ray,
  # or 0 in an unused tile): where to read per-ray inputs.
  take: np.ndarray
  length: np.ndarray  # [T, tile] float32 chord length in the box (mm).
  start: np.ndarray  # [T, tile] float32 box entry past its grid point (mm).
  num_steps: np.ndarray  # [T] int32 samples of the tile's longest ray.
  num_chunks: np.ndarray  # [T] int32 the tile's chunks (0: unused).
  first_chunk: np.ndarray  # [T] int32 the tile's first pool chunk.
  used: int  # Tiles holding at least one ray (the first ``used``).
  capacity: int  # Pool capacity in chunks (>= num_chunks.sum()).

  @property
  def tile(self) -> int:
    return int(self.pixels.shape[1])

  def ray_counts(self) -> np.ndarray:
    """[T, tile] int64 samples (segments) of each slot's ray, 0: padding."""
    real = self.pixels < self.counts.size
    return np.where(real, self.counts[self.take], 0)


def pool_chunks(used: int, most: int) -> int:
  """Pool capacity in chunks for ``used`` chunks out of at most ``most``: the
  next multiple of ceil(most / POOL_STEPS) (at most POOL_STEPS shapes per
  image size, step and volume; a view after the first rarely adds one)."""
  quantum = max(1, -(-int(most) // POOL_STEPS))
  return max(quantum, -(-int(used) // quantum) * quantum)


def plan_tiles(length, start, camera, shape, spacing, settings) -> TilePlan:
  """The tile layout of a view's rays.

  Args:
    length, start: [H, W] (or [H * W]) float32 chord length in the box and
      box entry past its grid point (mm; cache_sampling.chords).
    camera: the view (camera.Camera). shape: (Z, Y, X) voxels. spacing:
      (3,) mm. settings: RenderSettings (step_mm, cache_tile_rays,
      preintegrate).
  """
  length, start = np.asarray(length), np.asarray(start)
  s_max = sampling.num_samples(shape, spacing, settings.step_mm)
  counts = np.minimum(
      np.ceil((start + length) / settings.step_mm - 1e-6), s_max
  ).astype(np.int64)
  counts[length <= 0] = 0
  # Pre-integration samples both ends of each ray's segments.
  extra = int(settings.preintegrate)
  order = np.argsort(-counts, kind='stable')
  order = order[counts[order] > 0]
  n_pix = length.size
  tile = max(1, min(int(settings.cache_tile_rays), n_pix))
  n_tiles = -(-n_pix // tile)  # Capacity: every pixel's ray.
  used = -(-order.size // tile)
  pixels = np.full((n_tiles, tile), n_pix, np.int32)
  pixels.reshape(-1)[: order.size] = order
  real = pixels < n_pix
  take = np.where(real, pixels, pixels[:, :1])  # Padding: the tile's first.
  take = np.where(take < n_pix, take, 0)
  num_chunks = np.zeros(n_tiles, np.int32)
  # Rays are sorted by count: a tile's first ray is its longest.
  num_steps = np.zeros(n_tiles, np.int32)
  num_steps[:used] = counts[pixels[:used, 0]]
  num_chunks[:used] = -(-(num_steps[:used] + extra) // CHUNK)
  capacity = pool_chunks(
      max(int(num_chunks.sum()), view_bound(camera, shape, spacing, settings)),
      n_tiles * -(-(s_max + extra) // CHUNK),
  )
  return TilePlan(
      counts=counts,
      pixels=pixels,
      take=take,
      length=np.where(real, length.reshape(-1)[take], 0.0).astype(np.float32),
      start=np.where(real, start.reshape(-1)[take], 0.0).astype(np.float32),
      num_steps=num_steps,
      num_chunks=num_chunks,
      first_chunk=(np.cumsum(num_chunks) - num_chunks).astype(np.int32),
      used=used,
      capacity=capacity,
  )


def view_bound(camera, shape, spacing, settings) -> int:
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
