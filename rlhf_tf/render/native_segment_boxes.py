"""Each pre-integrated segment's (u, v) box, stored in the cache: the native
cached forward's transparency test without recomputing it per re-render.

The native pre-integrated forward (``native_segment_forward``) skips a
segment before its split when no bin of a box around every bin its pieces
could read has extinction (``native_segment_plan.surely_transparent``: the
box from its ends' u, v, du and its length, then 4 loads of the TF's
summed-area table). The box depends on the cached samples only, not on the
TF, yet computing it was ~18 % of a shaded re-render of Cranium 256^2
(perf samples: a chain of float-to-int conversions and clamps before the
loads, per walked segment). Here it is computed once, when the cache is
built, with the march's own arithmetic (``native_segment_regs``), and
stored per segment:

  seg_box [N, tile] uint32: pool row r of column m (the segment from end r
      to end r + 1) reads bins of columns c0 .. c1 - 1 and gradient rows
      r0 .. r1 - 1 at most, packed as bytes (c0, c1 - 1, r0, r1 - 1) from
      the lowest; rows no ray walks (past its end) are 0.

A re-render tests the box against the summed-area table (``clear``):
1 load in the row the walk reads anyway, and the ends are loaded only for
the segments that are not clear. Any box that holds every bin the pieces
read gives the same image bit for bit (a segment of pieces of extinction
0 adds exactly nothing, classified or not); this one is
surely_transparent's, whose one column and gradient row to spare on each
side dwarf any rounding of the ends between the cache's dtype and the
table's. Bytes hold boxes of tables up to 256 x 256 bins; with more, no
boxes are stored (None) and the march computes them per segment.

Cost: ~33 MB next to a ~310 MB pool on Cranium 256^2 (4 bytes per row and
ray), ~0.02 s of CPU (one thread) at the build.
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render import native_block_boxes, native_lock
from rlhf_tf.render.cached_march import CHUNK
from rlhf_tf.render.native_args import read_only
from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_pool_rows import end
from rlhf_tf.render.native_segment_regs import box

# Bins a packed box can hold (bytes: c1 - 1 and r1 - 1 up to 255).
MAX_BINS = 256
FIELDS = ('u', 'v', 'du', 'u_mid', 'v_mid', 'du_mid')


@numba.njit(**HELPER)
def clear(occ, seg_box, row, m):
  """Whether segment row of ray (column) m reads no bin of non-zero
  extinction (occ: ``native_segment_plan.occupancy``'s summed-area
  table)."""
  b = np.int64(seg_box[row, m])
  c0 = b & 255
  c1 = ((b >> 8) & 255) + 1
  r0 = (b >> 16) & 255
  r1 = ((b >> 24) & 255) + 1
  return occ[r1, c1] - occ[r0, c1] - occ[r1, c0] + occ[r0, c0] == 0


@kernel(nogil=True, parallel=True)
def _segment_boxes(fields, start, length, first_row, num_steps, step, bins_x,
                   bins_y, workers, out):  # fmt: skip
  """Fills out [N, tile] (module docstring) from the pool fields (u, v,
  du, u_mid, v_mid, du_mid) [N, tile] and each ray's start and length [T,
  tile] (the march's segment lengths: native_segment_forward); worker w
  takes tiles w, w + workers, ..."""
  u, v, du, um, vm, dum = fields
  n_tiles, tile = start.shape
  f = start.dtype.type
  zero = f(0.0)
  for wk in numba.prange(workers):
    for t in range(wk, n_tiles, workers):
      r0 = first_row[t]
      lo, hi = start[t], start[t] + length[t]
      for i in range(num_steps[t]):
        # Row by row, the tile's rays in the inner loop (one contiguous
        # row each, no branch: LLVM vectorises it).
        fi = f(i) * step
        row = r0 + i
        for m in range(tile):
          seg = min(max(hi[m] - fi, zero), step) - min(
              max(lo[m] - fi, zero), step
          )
          c0, c1, q0, q1 = box(
              end(u, v, du, row, m, f),
              end(um, vm, dum, row, m, f),
              end(u, v, du, row + 1, m, f),
              0.5 * seg,
              bins_x,
              bins_y,
          )
          packed = c0 | ((c1 - 1) << 8) | (q0 << 16) | ((q1 - 1) << 24)
          # Rows past a ray's end (the march stops there): 0.
          out[row, m] = np.uint32(packed) if fi < hi[m] else np.uint32(0)


def segment_boxes(fields, start, length, first_row, num_steps, step_mm, bins,
                  zeros=np.zeros):  # fmt: skip
  """[N, tile] uint32 boxes (module docstring) of a pre-integrated pool, or
  None for tables of more than MAX_BINS bins a side.

  Args:
    fields: (u, v, du, u_mid, v_mid, du_mid), each [N, tile] (numpy or
      JAX arrays, float32 or float64).
    start, length: [T, tile] each ray's box entry past its grid point and
      chord length (mm; the cache's).
    first_row: [T] each tile's first pool row.
    num_steps: [T] its segments (those of its longest ray).
    step_mm: the cache's step.
    bins: (bins_y, bins_x) of the TF tables the cache is rendered with.
  """
  by, bx = (int(b) for b in bins)
  if max(by, bx) > MAX_BINS:
    return None
  fields = tuple(read_only(x) for x in fields)
  start = read_only(start)
  dtype = start.dtype.type
  out = zeros(fields[0].shape, np.uint32)
  with native_lock.LOCK:
    _segment_boxes(
        fields,
        start,
        read_only(length, start.dtype),
        np.asarray(first_row, np.int64),
        np.asarray(num_steps, np.int64),
        dtype(step_mm),  # The march's step (cached_native_segments).
        bx,
        by,
        numba.get_num_threads(),
        out,
    )
  return out


def both(pool, start, length, first_row, num_steps, step_mm, bins,
         zeros=np.zeros):  # fmt: skip
  """(block boxes (native_block_boxes.block_boxes), segment boxes) of a
  pre-integrated pool {field: [N, tile]} (segment_boxes' other args)."""
  fields = [pool[k] for k in FIELDS]
  return (
      native_block_boxes.block_boxes(
          fields, first_row, num_steps, step_mm, bins, zeros
      ),
      segment_boxes(
          fields, start, length, first_row, num_steps, step_mm, bins, zeros
      ),
  )


def of_tiles(tiles, step_mm, bins):
  """segment_boxes of a pre-integrated cache's CacheTiles (e.g. after its
  fields were changed)."""
  return segment_boxes(
      [getattr(tiles, k) for k in FIELDS],
      tiles.start,
      tiles.length,
      np.asarray(tiles.first_chunk, np.int64) * CHUNK,
      tiles.num_steps,
      step_mm,
      bins,
  )
