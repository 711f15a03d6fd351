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
from rlhf_tf.render.native_segment_math import TINY_DU
from rlhf_tf.render.native_segment_plan import (
    NUM_PIECES,
    NUM_POINTS,
    occupancy,
    segment_adjoint,
    segment_forward,
    split,
    split_shading,
    transparent,
)


@numba.njit(inline='always')
def _scatter_piece(acc, bins_x, bins_y, points, k, g_mean):
  """Adds a transparent piece's cotangent into acc [bins, 8] from that of
  its mean (P, V) difference quotient, g_mean [4] (piece_adjoint's last
  loop; the shading weight's sigma terms are 0 there). Adds of an exact 0
  are left out: the P columns where the quotient falls back to the mean of
  V (|du| <= TINY_DU: air, u = 0 at both ends) and the upper gradient row
  at fv = 0 (v = 0: no gradient)."""
  u_f, u_b = points[k, 0], points[k + 1, 0]
  vbar = 0.5 * (points[k, 1] + points[k + 1, 1])
  j = min(max(int(vbar), 0), bins_y - 2)
  i_f = min(max(int(u_f), 0), bins_x - 1)
  i_b = min(max(int(u_b), 0), bins_x - 1)
  k_f, k_b = j * bins_x + i_f, j * bins_x + i_b
  fv = vbar - j
  du = u_b - u_f
  w00 = 1.0 - fv
  upper = fv != 0.0
  if abs(du) > TINY_DU:
    fu_f, fu_b = u_f - i_f, u_b - i_b
    for c in range(4):
      g_g = g_mean[c] / du
      g_p_f, g_v_f = -g_g, -g_g * fu_f
      g_p_b, g_v_b = g_g, g_g * fu_b
      acc[k_f, c] += w00 * g_p_f
      acc[k_f, 4 + c] += w00 * g_v_f
      acc[k_b, c] += w00 * g_p_b
      acc[k_b, 4 + c] += w00 * g_v_b
      if upper:
        acc[k_f + bins_x, c] += fv * g_p_f
        acc[k_f + bins_x, 4 + c] += fv * g_v_f
        acc[k_b + bins_x, c] += fv * g_p_b
        acc[k_b + bins_x, 4 + c] += fv * g_v_b
  else:
    for c in range(4):
      g_v = 0.5 * g_mean[c]
      acc[k_f, 4 + c] += w00 * g_v
      acc[k_b, 4 + c] += w00 * g_v
      if upper:
        acc[k_f + bins_x, 4 + c] += fv * g_v
        acc[k_b + bins_x, 4 + c] += fv * g_v


@numba.njit(inline='always')
def transparent_adjoint(
    bins_x, bins_y, points, lengths, optics, g_e, g_lt, acc, g_mean
):
  """segment_adjoint of a transparent segment (``transparent``: every
  piece's mean (P, V) quotient is exactly 0, so e = 0, lt = 0, T unchanged)
  without a table load: piece_adjoint's formulas at mean = 0 (tau = 0,
  phi = 1, a = 0; shaded: w = 1/2, min(e lit + ks s a, a) ties at 0 and
  splits g_e in halves, JAX's rule), each piece with the segment's g_e [3]
  and g_lt. g_mean: [4] scratch."""
  shading, ka, kd, ks = optics
  for k in range(NUM_PIECES - 1, -1, -1):
    l = lengths[k]
    if l == 0.0:
      continue
    g_tau = -g_lt
    if shading:
      d_f, s_f = points[k, 2], points[k, 3]
      d_b, s_b = points[k + 1, 2], points[k + 1, 3]
      lit = ka + kd * (d_f + 0.5 * (d_b - d_f))
      s = s_f + 0.5 * (s_b - s_f)
      g_a = 0.0
      for c in range(3):
        g_val = g_e[c] * 0.5
        g_a += g_e[c] - g_val
        g_mean[1 + c] = g_val * lit * l
        g_a += ks * s * g_val
      g_tau += g_a
    else:
      for c in range(3):
        g_mean[1 + c] = g_e[c] * l
    g_mean[0] = g_tau * l
    _scatter_piece(acc, bins_x, bins_y, points, k, g_mean)


@numba.njit(nogil=True)
def _adjoint_group(
    fields,
    lo,
    hi,
    r0,
    steps,
    table,
    occ,
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
  pass a cotangent to their extinction and emission (transparent_adjoint,
  no table load; occ: ``occupancy``)."""
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
      if transparent(occ, bins_x, bins_y, points, lengths):
        # e = 0: T_i and R_i unchanged, dC/dlt_i = R_i.
        g_lt = g_log_t[m]
        for c in range(3):
          g_lt += g_rgb[m, c] * behind[m, c]
          g_e[c] = g_rgb[m, c] * trans[m]
        transparent_adjoint(
            bins_x, bins_y, points, lengths, optics, g_e, g_lt, acc, g_mean
        )
        continue
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
  occ = occupancy(table, bins_x)
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
          occ,
          bins_x,
          bins_y,
          params,
          rgb_total[t, g0:g1],
          g_rgb[t, g0:g1],
          g_log_t[t, g0:g1],
          g_out[b],
      )
