"""The numba walkers of the native pre-integrated cached march
(``rlhf_tf.render.cached_native_segments``: what and why; the per-segment
formulas in ``native_segment_math``). Forward: per group of rays, front to
back over segments (row i to row i + 1), skipping transparent ones,
stopping at T < threshold. Adjoint: the same walk over the segments
composited, R_i = C - sum_{j<=i} T_j e_j, into NUM_BLOCKS partial tables.
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render.native_segment_math import (
    half_adjoint,
    half_forward,
    occupancy,
    segment_transparent,
)

_Q = 1.0 / 65535.0


@numba.njit(inline='always')
def _shade(d, s, dm, sm, row, m, shading):
  """Dequantised headlight terms of a row's end and midpoint and of the
  next row's end: (d_f, s_f, d_m, s_m, d_b, s_b)."""
  if not shading:
    return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
  return (
      d[row, m] * _Q,
      s[row, m] * _Q,
      dm[row, m] * _Q,
      sm[row, m] * _Q,
      d[row + 1, m] * _Q,
      s[row + 1, m] * _Q,
  )


@numba.njit(nogil=True)
def _forward_group(
    u,
    v,
    um,
    vm,
    d,
    s,
    dm,
    sm,
    lo,
    hi,
    r0,
    num,
    table,
    occ,
    bins_x,
    bins_y,
    params,
    threshold,
    rgb,
    log_t,
    steps,
):
  """Marches one group's rays (pool columns of lo, hi [n]): fills rgb
  [n, 3], log_t [n] (log T_N) and steps [n] (segments composited)."""
  n = lo.shape[0]
  zero = lo.dtype.type(0.0)
  step, shading, ka, kd, ks = params
  shaded = shading > 0
  f = table.dtype.type  # The cache's float32 u, v in the table's dtype.
  e1 = np.empty(4)
  e2 = np.empty(4)
  trans = np.ones(n)
  done = np.zeros(n, np.bool_)
  rgb[...] = 0.0
  log_t[...] = 0.0
  steps[...] = 0
  live = n
  for i in range(num):
    if live == 0:
      break
    fi = lo.dtype.type(i) * step
    row = r0 + i
    for m in range(n):
      if done[m]:
        continue
      if fi >= hi[m] or trans[m] < threshold:
        done[m] = True
        live -= 1
        continue
      steps[m] = i + 1
      seg = min(max(hi[m] - fi, zero), step) - min(max(lo[m] - fi, zero), step)
      u_f, v_f = f(u[row, m]), f(v[row, m])
      u_m, v_m = f(um[row, m]), f(vm[row, m])
      u_b, v_b = f(u[row + 1, m]), f(v[row + 1, m])
      if segment_transparent(occ, bins_x, bins_y, u_f, v_f, u_m, v_m, u_b, v_b):
        continue  # Both halves transparent: 4 loads.
      half = 0.5 * seg
      d_f, s_f, d_m, s_m, d_b, s_b = _shade(d, s, dm, sm, row, m, shaded)
      lt1 = half_forward(
          table,
          bins_x,
          bins_y,
          u_f,
          v_f,
          u_m,
          v_m,
          half,
          d_f,
          s_f,
          d_m,
          s_m,
          shaded,
          ka,
          kd,
          ks,
          e1,
      )
      lt2 = half_forward(
          table,
          bins_x,
          bins_y,
          u_m,
          v_m,
          u_b,
          v_b,
          half,
          d_m,
          s_m,
          d_b,
          s_b,
          shaded,
          ka,
          kd,
          ks,
          e2,
      )
      t_i = trans[m]
      ex1 = 1.0 - e1[3]  # exp(lt_1).
      for c in range(3):
        rgb[m, c] += t_i * (e1[c] + ex1 * e2[c])
      log_t[m] += lt1 + lt2
      trans[m] = t_i * ex1 * (1.0 - e2[3])  # T_{i+1} = T_i exp(lt).


@numba.njit(parallel=True, nogil=True, cache=True)
def forward_kernel(
    u,
    v,
    um,
    vm,
    d,
    s,
    dm,
    sm,
    start,
    length,
    first_row,
    num_steps,
    table,
    bins_x,
    bins_y,
    params,
    threshold,
    group,
    workers,
    rgb,
    log_t,
    steps,
):
  """rgb [T, tile, 3], log_t [T, tile], steps [T, tile]; worker w takes
  groups w, w + workers, ... (cached_native._forward_kernel)."""
  n_tiles, tile = start.shape
  groups = -(-tile // group)
  jobs = n_tiles * groups
  occ = occupancy(table, bins_x)
  for wk in numba.prange(workers):
    for job in range(wk, jobs, workers):
      t = job // groups
      g0 = (job % groups) * group
      g1 = min(g0 + group, tile)
      lo = start[t, g0:g1]
      _forward_group(
          u[:, g0:g1],
          v[:, g0:g1],
          um[:, g0:g1],
          vm[:, g0:g1],
          d[:, g0:g1],
          s[:, g0:g1],
          dm[:, g0:g1],
          sm[:, g0:g1],
          lo,
          lo + length[t, g0:g1],
          first_row[t],
          num_steps[t],
          table,
          occ,
          bins_x,
          bins_y,
          params,
          threshold,
          rgb[t, g0:g1],
          log_t[t, g0:g1],
          steps[t, g0:g1],
      )


@numba.njit(nogil=True)
def _adjoint_group(
    u,
    v,
    um,
    vm,
    d,
    s,
    dm,
    sm,
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
  R_i, d log T_N / dlt_i = 1; e = e_1 + exp(lt_1) e_2, lt = lt_1 + lt_2)."""
  n = lo.shape[0]
  zero = lo.dtype.type(0.0)
  step, shading, ka, kd, ks = params
  shaded = shading > 0
  f = table.dtype.type  # The cache's float32 u, v in the table's dtype.
  e1 = np.empty(4)
  e2 = np.empty(4)
  g_e1 = np.empty(3)
  g_e2 = np.empty(3)
  mean = np.empty(4)
  g_mean = np.empty(4)
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
      half = 0.5 * seg
      d_f, s_f, d_m, s_m, d_b, s_b = _shade(d, s, dm, sm, row, m, shaded)
      half_forward(
          table,
          bins_x,
          bins_y,
          f(u[row, m]),
          f(v[row, m]),
          f(um[row, m]),
          f(vm[row, m]),
          half,
          d_f,
          s_f,
          d_m,
          s_m,
          shaded,
          ka,
          kd,
          ks,
          e1,
      )
      half_forward(
          table,
          bins_x,
          bins_y,
          f(um[row, m]),
          f(vm[row, m]),
          f(u[row + 1, m]),
          f(v[row + 1, m]),
          half,
          d_m,
          s_m,
          d_b,
          s_b,
          shaded,
          ka,
          kd,
          ks,
          e2,
      )
      t_i = trans[m]
      ex1 = 1.0 - e1[3]  # exp(lt_1), as the forward.
      g_lt = g_log_t[m]
      g_e2e = 0.0
      for c in range(3):
        behind[m, c] -= t_i * (e1[c] + ex1 * e2[c])  # R_i.
        g_lt += g_rgb[m, c] * behind[m, c]
        g_e1[c] = g_rgb[m, c] * t_i
        g_e2[c] = ex1 * g_e1[c]
        g_e2e += g_e1[c] * e2[c]
      half_adjoint(
          table,
          bins_x,
          bins_y,
          f(u[row, m]),
          f(v[row, m]),
          f(um[row, m]),
          f(vm[row, m]),
          half,
          d_f,
          s_f,
          d_m,
          s_m,
          shaded,
          ka,
          kd,
          ks,
          g_e1,
          g_lt + ex1 * g_e2e,
          acc,
          mean,
          g_mean,
      )
      half_adjoint(
          table,
          bins_x,
          bins_y,
          f(um[row, m]),
          f(vm[row, m]),
          f(u[row + 1, m]),
          f(v[row + 1, m]),
          half,
          d_m,
          s_m,
          d_b,
          s_b,
          shaded,
          ka,
          kd,
          ks,
          g_e2,
          g_lt,
          acc,
          mean,
          g_mean,
      )
      trans[m] = t_i * ex1 * (1.0 - e2[3])


@numba.njit(parallel=True, nogil=True, cache=True)
def adjoint_kernel(
    u,
    v,
    um,
    vm,
    d,
    s,
    dm,
    sm,
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
          u[:, g0:g1],
          v[:, g0:g1],
          um[:, g0:g1],
          vm[:, g0:g1],
          d[:, g0:g1],
          s[:, g0:g1],
          dm[:, g0:g1],
          sm[:, g0:g1],
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
