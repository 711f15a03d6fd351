"""Empty-space skipping: which blocks of a volume a TF leaves invisible.

The volume is cut into blocks of ``block`` voxel cells per axis (block b
spans voxel coordinates [b B, (b + 1) B], so every trilinear sample at a
point in the block uses only voxels of the block and its upper border).
Per block we keep the range of JH coordinates its samples can take:
x in [min x, max x] over its voxels (trilinear interpolation is a convex
combination) and y in [0, max |g| / grad_max] (|trilinear(g)| <= max |g| by
convexity of the norm; its minimum can be 0 when gradients cancel).

The ranges are then dilated to the 3 x 3 x 3 neighbourhood of each block, so
that a segment whose front point lies in block b and whose back point lies
within one block of it stays inside b's range rectangle, and so does every
classification point of the segment (a convex combination of the two ends;
the rectangle is convex): pre-integrated segments are covered too.

A block is empty for a TF table when every bin that a bilinear lookup in its
rectangle can touch has opacity <= ``skip_alpha`` (a summed-area table of
the bins above the threshold answers this in O(1) per block). A skipped
classification point therefore had TF opacity <= skip_alpha: a pixel changes
by at most skip_alpha * (skipped length / reference step) in opacity and
colour.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import sampling
from rlhf_tf.render.histogram import JHAxes


def block_ranges(packed, axes: JHAxes, block: int):
  """Per-block JH ranges, dilated to the block's neighbours.

  Args:
    packed: [Z, Y, X, 4] (HU, gradient HU/mm), sampling.pack_volume.
    axes: the JH axes.
    block: B, voxel cells per block side (static).

  Returns:
    [Bz, By, Bx, 3] (min x, max x, max y) with Bn = max(1, ceil((n - 1) / B)).
  """
  shape = packed.shape[:3]
  nb = [max(1, -(-(n - 1) // block)) for n in shape]
  x = axes.hu_to_x(packed[..., 0])
  y = axes.grad_to_y(jnp.sqrt(jnp.sum(packed[..., 1:] ** 2, axis=-1)))
  pad = [(0, b * block + 1 - n) for b, n in zip(nb, shape)]
  win, strides = (block + 1,) * 3, (block,) * 3

  def reduce(v, init, op):
    v = jnp.pad(v, pad, mode='edge')
    v = jax.lax.reduce_window(v, init, op, win, strides, 'VALID')
    return jax.lax.reduce_window(v, init, op, (3, 3, 3), (1, 1, 1), 'SAME')

  return jnp.stack([reduce(x, jnp.inf, jax.lax.min),
                    reduce(x, -jnp.inf, jax.lax.max),
                    reduce(y, -jnp.inf, jax.lax.max)], axis=-1)


def visible_blocks(ranges, tf_table, skip_alpha: float):
  """[Bz, By, Bx] bool: blocks where the TF's opacity may exceed skip_alpha.

  Args:
    ranges: [Bz, By, Bx, 3] from block_ranges.
    tf_table: [bins_y, bins_x, 4] RGBA (alpha per reference step).
    skip_alpha: opacity threshold (static float).
  """
  by, bx = tf_table.shape[:2]
  above = jax.lax.stop_gradient(tf_table[..., 3]) > skip_alpha
  sat = jnp.pad(jnp.cumsum(jnp.cumsum(above.astype(jnp.int32), 0), 1),
                ((1, 0), (1, 0)))

  def bins(v, n):
    """Index range [lo, hi] of bins a lookup at coordinates in [v0, v1]
    reads (tf_coords: floor(u) and floor(u) + 1, clamped)."""
    u = jnp.clip(v * n - 0.5, 0.0, n - 1.0)
    return jnp.clip(jnp.floor(u), 0, n - 1).astype(jnp.int32)

  x_lo, x_hi = bins(ranges[..., 0], bx), bins(ranges[..., 1], bx)
  x_hi = jnp.minimum(x_hi + 1, bx - 1)
  y_hi = jnp.minimum(bins(ranges[..., 2], by) + 1, by - 1)
  count = (sat[y_hi + 1, x_hi + 1] - sat[0, x_hi + 1] - sat[y_hi + 1, x_lo] +
           sat[0, x_lo])
  return count > 0


def point_visible(visible, shape, block: int, coords):
  """[...] bool: the visibility of the block holding each point.

  Args:
    visible: [Bz, By, Bx] from visible_blocks.
    shape: (Z, Y, X) voxel counts (static).
    coords: [..., 3] continuous voxel coordinates (clamped like trilinear).
  """
  flat = 0
  nb = visible.shape
  for a in range(3):
    c = jnp.clip(coords[..., a], 0.0, shape[a] - 1.0)
    i = jnp.clip(jnp.floor(c / block), 0, nb[a] - 1).astype(jnp.int32)
    flat = flat * nb[a] + i
  return visible.reshape(-1).at[flat].get(mode='promise_in_bounds')


def coarse_stride(spacing, step_mm: float, block: int) -> int:
  """Grid points between two visibility checks along a ray (static).

  A check at point j covers segments j .. j + c - 1 when their far end,
  c ray steps away, stays within one block of j's block: c ray steps <=
  block * min(spacing), with ray steps up to 2 step_mm (perspective rays
  up to 60 degrees off axis)."""
  return max(1, int(np.floor(block * float(np.min(spacing)) /
                             (2.0 * step_mm))))


def ray_spans(origins, directions, grid, visible, shape, spacing, num: int,
              step_mm: float, block: int):
  """(first segment [R], end segment [R]) of each ray's visible span.

  Args:
    origins, directions: [R, 3] rays; grid: their sampling.ray_grid.
    visible: [Bz, By, Bx] from visible_blocks, or None (no skipping: the
      whole chord).
    shape, spacing: the volume's (static). num: segments of the longest
      chord (sampling.num_segments). step_mm, block: the grid step and the
      block side (voxels).

  Returns:
    int32 [R] first and one-past-last segment that may be visible; segments
    outside [first, end) lie in empty blocks (end = first = 0: all empty).
  """
  count = sampling.segment_counts(grid)
  if visible is None:
    return jnp.zeros_like(count), count
  c = coarse_stride(spacing, step_mm, block)
  checks = jnp.arange(0, num, c)
  pts = sampling.grid_points(origins, directions, grid, jnp.broadcast_to(
      checks, origins.shape[:-1] + checks.shape))
  coords = pts / jnp.asarray(spacing, pts.dtype)
  vis = point_visible(visible, shape, block, coords)
  # Steps beyond 2 step_mm (rays > 60 degrees off axis) are not covered by
  # the coarse stride: never skip along those.
  vis = vis | (grid[1] > 2.0 * step_mm)[..., None]
  vis = vis & (checks < count[..., None])
  any_vis = jnp.any(vis, axis=-1)
  first = jnp.argmax(vis, axis=-1) * c
  last = checks.size - 1 - jnp.argmax(vis[..., ::-1], axis=-1)
  end = jnp.minimum((last + 1) * c, count)
  return jnp.where(any_vis, first, 0), jnp.where(any_vis, end, 0)
