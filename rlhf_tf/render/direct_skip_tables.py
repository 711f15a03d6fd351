"""The direct pre-integrated march's per-render skip tables
(``direct_segment_kernels``), built from the render's empty-space
occupancy and (P, V) table before the rays are marched:

- ``coarse_occupancy``: coarse blocks of coarse^3 empty-space blocks,
  empty only where all their blocks are (crossed at once in the air
  around a head);
- ``next_occupied``: per TF column the next column with extinction in any
  gradient row (the march's one-load transparency test of a segment from
  its HU and slopes alone).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True)
def coarse_occupancy(occ, nb, coarse):
  """([Cz * Cy * Cx] uint8 occupancy of coarse blocks of coarse^3 blocks:
  0 where every block in it is empty (occ [Bz * By * Bx]), their counts
  (Cz, Cy, Cx) = ceil(nb / coarse))."""
  cb = np.empty(3, np.int64)
  for a in range(3):
    cb[a] = -(-nb[a] // coarse)
  out = np.zeros(cb[0] * cb[1] * cb[2], np.uint8)
  # By runs of coarse blocks along x, no division per block (~5x faster).
  for z in range(nb[0]):
    for y in range(nb[1]):
      row = ((z // coarse) * cb[1] + y // coarse) * cb[2]
      base = (z * nb[1] + y) * nb[2]
      for cx in range(cb[2]):
        for x in range(cx * coarse, min((cx + 1) * coarse, nb[2])):
          if occ[base + x]:
            out[row + cx] = 1
            break
  return out, cb


@numba.njit(nogil=True)
def next_occupied(table, bins_x):
  """[bins_x + 1] int32: at column c, the first column >= c with a bin
  of extinction V_0 != 0 in any gradient row (bins_x: none). Columns c0
  .. c1 - 1 hold no such bin iff out[c0] >= c1: native_segment_plan.
  surely_transparent's test with a v range of [0, bins_y - 1] (rows 0 ..
  bins_y - 1, every row), in one load instead of four of its summed-area
  table."""
  bins_y = table.shape[0] // bins_x
  out = np.empty(bins_x + 1, np.int32)
  out[bins_x] = bins_x
  for i in range(bins_x - 1, -1, -1):
    out[i] = out[i + 1]
    for j in range(bins_y):
      if table[j * bins_x + i, 4] != 0.0:
        out[i] = i
        break
  return out
