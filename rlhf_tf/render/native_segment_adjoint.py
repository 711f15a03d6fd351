"""The numba adjoint walker of the native pre-integrated cached march
(``rlhf_tf.render.cached_native_segments``: what and why; one segment in
``native_segment_plan``): per group of rays the forward's walk over the
segments it composited, R_i = C - sum_{j<=i} T_j e_j, into NUM_BLOCKS
partial tables.
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render.native_segment_forward import (
    columns,
    load_ends,
    load_shading,
)
from rlhf_tf.render.native_segment_plan import (
    NUM_PIECES,
    NUM_POINTS,
    segment_adjoint,
    segment_forward,
    split,
    split_shading,
)


@numba.njit(nogil=True)
def _adjoint_group(
    fields,
    lo,
    hi,
    r0,
    steps,
    table,
    bins_x,
    bins_y,
    params,
    rgb_total,
    g_rgb,
    g_log_t,
    acc,
):
  """Adds the group's share of the (P, V) table's cotangent into acc
  [bins, 8], each ray over its steps[m] segments (cached_segments.
  march_tile_vjp: T_i, R_i = sum_{j>i} T_j e_j; dC/de_i = T_i, dC/dlt_i =
  R_i, d log T_N / dlt_i = 1). Transparent segments are walked too: they
  pass a cotangent to their extinction."""
  u, v, du, um, vm, dum, d, s, dm, sm = fields  # Once (forward's note).
  n = lo.shape[0]
  zero = lo.dtype.type(0.0)
  step, shading, ka, kd, ks, min_den = params
  shaded = shading > 0
  optics = (shaded, ka, kd, ks)
  f = table.dtype.type
  ends = np.zeros((3, 5))
  points = np.zeros((NUM_POINTS, 4))
  lengths = np.zeros(NUM_PIECES)
  taus = np.zeros(2)
  e = np.zeros((NUM_PIECES + 1, 4))
  g_e = np.zeros(3)
  g_piece = np.zeros(3)
  mean = np.zeros(4)
  g_mean = np.zeros(4)
  trans_k = np.zeros(NUM_PIECES)
  trans = np.ones(n)
  behind = rgb_total.astype(np.float64)
  most = 0
  for m in range(n):
    most = max(most, steps[m])
  for i in range(most):
    fi = lo.dtype.type(i) * step
    row = r0 + i
    for m in range(n):
      if i >= steps[m]:
        continue
      seg = min(max(hi[m] - fi, zero), step) - min(max(lo[m] - fi, zero), step)
      load_ends(u, v, du, um, vm, dum, row, m, f, ends)
      split(ends, 0.5 * seg, bins_x, min_den, points, lengths, taus)
      if shaded:
        load_shading(d, s, dm, sm, row, m, ends)
        split_shading(ends, taus, points)
      segment_forward(table, bins_x, bins_y, points, lengths, optics, e)
      t_i = trans[m]
      g_lt = g_log_t[m]
      for c in range(3):
        behind[m, c] -= t_i * e[NUM_PIECES, c]  # R_i.
        g_lt += g_rgb[m, c] * behind[m, c]
        g_e[c] = g_rgb[m, c] * t_i
      segment_adjoint(
          table,
          bins_x,
          bins_y,
          points,
          lengths,
          optics,
          e,
          g_e,
          g_lt,
          acc,
          g_piece,
          mean,
          g_mean,
          trans_k,
      )
      trans[m] = t_i * (1.0 - e[NUM_PIECES, 3])


@numba.njit(parallel=True, nogil=True, cache=True)
def adjoint_kernel(
    fields,
    start,
    length,
    first_row,
    steps,
    table,
    bins_x,
    bins_y,
    params,
    rgb_total,
    g_rgb,
    g_log_t,
    group,
    g_out,
):
  """Adds the cotangent of the (P, V) table into g_out [NUM_BLOCKS, bins,
  8] (block b: groups b, b + NUM_BLOCKS, ...; summed in a fixed order)."""
  n_tiles, tile = start.shape
  groups = -(-tile // group)
  jobs = n_tiles * groups
  blocks = g_out.shape[0]
  g_out[...] = 0.0
  for b in numba.prange(blocks):
    for job in range(b, jobs, blocks):
      t = job // groups
      g0 = (job % groups) * group
      g1 = min(g0 + group, tile)
      lo = start[t, g0:g1]
      _adjoint_group(
          columns(fields, g0, g1),
          lo,
          lo + length[t, g0:g1],
          first_row[t],
          steps[t, g0:g1],
          table,
          bins_x,
          bins_y,
          params,
          rgb_total[t, g0:g1],
          g_rgb[t, g0:g1],
          g_log_t[t, g0:g1],
          g_out[b],
      )
