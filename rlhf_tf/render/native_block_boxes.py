"""Coarse (u, v) boxes of a pre-integrated cache's segments, per ray and
block of BLOCK segments: the native march skips a whole block where the TF
has no extinction in its box.

The native pre-integrated march (``native_segment_forward``) tests every
segment it walks against the TF's non-zero bins
(``native_segment_plan.surely_transparent``: a box around every bin its
pieces could read, 4 loads of a summed-area table). On Cranium 256^2
(default TF) 4.7M segments are walked and 3.9M of them are transparent
(the air in front of the head): walking and testing them took half the
re-render's time. The box of a segment does not depend on the TF, so it is
computed once, when the cache is built, and the union over a ray's
segments i0 .. i0 + BLOCK - 1 stored per block:

  box [N // BLOCK, tile, 4] uint16 (c0, c1, r0, r1): pool rows r .. r +
      BLOCK - 1 of column m (segments starting there) read bins of
      columns c0 .. c1 - 1 and gradient rows r0 .. r1 - 1 at most.

A re-render tests each block's box against the TF's summed-area table
(O(1)) and walks a block whose box holds no bin of non-zero extinction
without loading or testing its segments (they add nothing: exact; only its
end and termination tests remain).

The box of a segment is that of ``surely_transparent`` with its reach
bounded for any segment length up to the step, h = l / 2 <= step / 2:
the cubic Hermite of a half from a to c stays within 4/27 (|s_a h - du| +
|s_c h - du|) <= 4/27 (|s_a| h + |s_c| h + 2 |du|) of its chord (s: du /
dt in bins / mm, du = u_c - u_a), and one more column and gradient row on
each side for rounding. So every segment of a block whose box is clear
would have been found transparent by surely_transparent: the image is the
same bit for bit (tests/test_native_block_boxes.py).

The boxes are built by ``block_boxes`` from the pool's float32 fields
(u, v, du and their midpoints) after the cache is sampled: ~5 MB next to a
~310 MB pool on Cranium 256^2, ~0.03 s of CPU (~3 % of the build; inside
the build's own kernel it cost more: ~0.17 s).
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render import native_lock
from rlhf_tf.render.cached_march import CHUNK
from rlhf_tf.render.native_args import read_only
from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_inline import HELPER

# The plan's own bin indices: a box holds every bin the plan's tests read.
from rlhf_tf.render.native_segment_plan import _column, _row

# Segments per box: two per pool chunk (cached_march.CHUNK = 32; a tile's
# first row is a multiple of CHUNK, so blocks never straddle two tiles).
BLOCK = 16
_REACH = 4.0 / 27.0
FIELDS = ('u', 'v', 'du', 'u_mid', 'v_mid', 'du_mid')


@numba.njit(**HELPER)
def _half_columns(u_a, u_c, s_a, s_c, half, bins_x):
  """(first column, last column + 1) a half a -> c of at most ``half`` mm
  can read (module docstring)."""
  du = u_c - u_a
  reach = _REACH * (abs(s_a) * half + abs(s_c) * half + 2.0 * abs(du))
  # (1 + 1e-9): a column edge exactly at a rounded bound falls outside.
  reach = reach * (1.0 + 1e-9) + 1.0
  c0 = _column(min(u_a, u_c) - reach, bins_x)
  c1 = _column(max(u_a, u_c) + reach, bins_x) + 1
  return c0, c1


@kernel(nogil=True, parallel=True)
def _block_boxes(fields, first_row, num_steps, half, bins_x, bins_y, workers,
                 out):  # fmt: skip
  """Fills out [N // BLOCK, tile, 4] (module docstring) from the pool
  fields (u, v, du, u_mid, v_mid, du_mid) [N, tile] of tiles whose segments
  i < num_steps[t] start at row first_row[t] + i; worker w takes tiles w,
  w + workers, ... Row by row, the tile's rays in the inner loop (one
  contiguous row each: LLVM vectorises it)."""
  u, v, du, um, vm, dum = fields
  tile = u.shape[1]
  n_tiles = first_row.shape[0]
  for wk in numba.prange(workers):
    acc = np.empty((4, tile), np.int64)
    for t in range(wk, n_tiles, workers):
      r0 = first_row[t]
      for b0 in range(0, num_steps[t], BLOCK):
        b1 = min(b0 + BLOCK, num_steps[t])
        acc[0], acc[1], acc[2], acc[3] = bins_x, 0, bins_y, 0
        for row in range(r0 + b0, r0 + b1):
          _widen(
              acc,
              u[row],
              um[row],
              u[row + 1],
              du[row],
              dum[row],
              du[row + 1],
              v[row],
              vm[row],
              v[row + 1],
              half,
              bins_x,
              bins_y,
          )
        k = (r0 + b0) // BLOCK
        for c in range(4):
          out[k, :, c] = acc[c]


@numba.njit(**HELPER)
def _widen(acc, u_f, u_m, u_b, s_f, s_m, s_b, v_f, v_m, v_b, half, bins_x,
           bins_y):  # fmt: skip
  """acc [4, tile] (c0, c1, r0, r1 of each ray) widened by the boxes of
  the segments whose front, midpoint and back u, du, v rows [tile] are
  given."""
  for m in range(acc.shape[1]):
    a0, a1 = _half_columns(
        np.float64(u_f[m]),
        np.float64(u_m[m]),
        np.float64(s_f[m]),
        np.float64(s_m[m]),
        half,
        bins_x,
    )
    b0, b1 = _half_columns(
        np.float64(u_m[m]),
        np.float64(u_b[m]),
        np.float64(s_m[m]),
        np.float64(s_b[m]),
        half,
        bins_x,
    )
    vf, vm, vb = np.float64(v_f[m]), np.float64(v_m[m]), np.float64(v_b[m])
    acc[0, m] = min(acc[0, m], min(a0, b0))
    acc[1, m] = max(acc[1, m], max(a1, b1))
    acc[2, m] = min(acc[2, m], _row(min(vf, min(vm, vb)) - 1.0, bins_y))
    acc[3, m] = max(acc[3, m], _row(max(vf, max(vm, vb)) + 1.0, bins_y) + 2)


def block_boxes(fields, first_row, num_steps, step_mm, bins, zeros=np.zeros):
  """[N // BLOCK, tile, 4] uint16 boxes (module docstring) of a
  pre-integrated pool.

  Args:
    fields: (u, v, du, u_mid, v_mid, du_mid), each [N, tile] (numpy or
      JAX arrays; float32 as the cache stores them).
    first_row: [T] each tile's first pool row (a multiple of BLOCK).
    num_steps: [T] its segments (those of its longest ray).
    step_mm: the cache's step (segments are at most this long).
    bins: (bins_y, bins_x) of the TF tables the cache is rendered with.

  Returns:
    The boxes; blocks no tile walks are 0 (never read).
  """
  by, bx = (int(b) for b in bins)
  if max(by, bx) >= 2**16:
    raise ValueError(f'block boxes need bins < 65536, got {(by, bx)}')
  fields = tuple(read_only(f) for f in fields)
  rows, tile = fields[0].shape
  first_row = np.asarray(first_row, np.int64)
  if np.any(first_row % BLOCK):
    raise ValueError(f'tiles must start at multiples of {BLOCK} rows')
  out = zeros((rows // BLOCK, tile, 4), np.uint16)
  # The march's segment lengths are in the cache's dtype: float32 (or
  # float64); its step rounded to either is at most this.
  half = 0.5 * max(float(step_mm), float(np.float32(step_mm))) * (1.0 + 1e-6)
  with native_lock.LOCK:
    _block_boxes(
        fields,
        first_row,
        np.asarray(num_steps, np.int64),
        half,
        bx,
        by,
        numba.get_num_threads(),
        out,
    )
  return out


def of_tiles(tiles, step_mm, bins):
  """block_boxes of a pre-integrated cache's CacheTiles (e.g. after its
  fields were changed)."""
  return block_boxes(
      [getattr(tiles, k) for k in FIELDS],
      np.asarray(tiles.first_chunk, np.int64) * CHUNK,
      tiles.num_steps,
      step_mm,
      bins,
  )


@numba.njit(**HELPER)
def block_clear(occ, box, k, m):
  """Whether block k of ray (column) m reads no bin of non-zero extinction
  (occ: ``native_segment_plan.occupancy``'s summed-area table)."""
  c0, c1 = np.int64(box[k, m, 0]), np.int64(box[k, m, 1])
  r0, r1 = np.int64(box[k, m, 2]), np.int64(box[k, m, 3])
  return occ[r1, c1] - occ[r0, c1] - occ[r1, c0] + occ[r0, c0] == 0
