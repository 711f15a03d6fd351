"""The numba kernels of the native point-sampled cached march
(``rlhf_tf.render.cached_native``: the formulas and why; here the code).

Forward: per group of GROUP rays, front to back, a_i = alpha (a whole
segment at the reference step) or -expm1((l_i / l_ref) log1p(-alpha)),
T_{i+1} = T_i (1 - a_i), C += T_i a_i c_i; stop at T_i < threshold; skip a
sample whose four bins have alpha = 0. Adjoint: the same walk over the
samples composited, R_i = C - sum_{j<=i} T_j a_j c_j,
dC/dc_i = T_i a_i, dC/dlt_i = R_i - T_{i+1} c_i, scatter-added into
NUM_BLOCKS partial tables.
"""

from __future__ import annotations

import numba
import numpy as np

# The adjoint accumulates into NUM_BLOCKS partial tables (task b adds into
# table b % NUM_BLOCKS), summed in a fixed order.
NUM_BLOCKS = 8


@numba.njit(inline='always')
def _lookup(table, k, bins_x, fx, fy, c):
  """Channel c of the bilinear lookup of flat bins k, k + 1, k + bins_x,
  k + bins_x + 1 of table [bins, 4] (sampling.bilinear_lookup)."""
  a, b = table[k, c], table[k + 1, c]
  bottom = a + fx * (b - a)
  a, b = table[k + bins_x, c], table[k + bins_x + 1, c]
  top = a + fx * (b - a)
  return bottom + fy * (top - bottom)


@numba.njit(inline='always')
def _transparent(table, k, bins_x):
  """Whether the four bins of a lookup all have alpha = 0."""
  zero = table.dtype.type(0.0)
  return (
      table[k, 3] == zero
      and table[k + 1, 3] == zero
      and table[k + bins_x, 3] == zero
      and table[k + bins_x + 1, 3] == zero
  )


@numba.njit(inline='always')
def _segment(lo, hi, fi, step, zero):
  """l_i: the part of sample i's segment [fi, fi + step) inside [lo, hi)
  (sampling.segment_length)."""
  return min(max(hi - fi, zero), step) - min(max(lo - fi, zero), step)


@numba.njit(inline='always')
def _opacity(alpha, seg, ref, one_minus_eps):
  """a_i = 1 - (1 - alpha)^(l_i / l_ref), alpha clamped to 1 - epsneg
  (compositing.opacity_log_transmittance). A whole segment of the
  reference length (every sample but a ray's first and last when the step
  is the reference step, as in the project's scenes) is alpha itself: no
  log1p / expm1, which cost more than the rest of a sample."""
  a = min(alpha, one_minus_eps)
  if seg == ref:
    return a
  return -np.expm1(seg / ref * np.log1p(-a))


@numba.njit(nogil=True)
def _forward_group(
    idx,
    fx,
    fy,
    dif,
    spe,
    lo,
    hi,
    r0,
    num,
    table,
    bins_x,
    params,
    threshold,
    rgb,
    trans,
    steps,
):
  """Marches the n rays of one group (pool columns: those of lo, hi [n]):
  fills rgb [n, 3] (C), trans [n] (T_N) and steps [n] (samples
  composited). idx ... spe: [rows, n] views of the group's pool columns."""
  n = lo.shape[0]
  one = table.dtype.type(1.0)
  zero = table.dtype.type(0.0)
  q = table.dtype.type(1.0 / 65535.0)
  step, ref, shading, ka, kd, ks, one_minus_eps = params
  rgb[...] = zero
  trans[...] = one
  steps[...] = 0
  done = np.zeros(n, np.bool_)
  live = n
  for i in range(num):
    if live == 0:
      break
    fi = table.dtype.type(i) * step
    row = r0 + i
    for m in range(n):
      if done[m]:
        continue
      if fi >= hi[m] or trans[m] < threshold:
        done[m] = True
        live -= 1
        continue
      steps[m] = i + 1
      k = idx[row, m]
      if _transparent(table, k, bins_x):
        continue  # alpha = 0: transparent (exact).
      seg = _segment(lo[m], hi[m], fi, step, zero)
      wx = table.dtype.type(fx[row, m]) * q
      wy = table.dtype.type(fy[row, m]) * q
      a = _opacity(
          _lookup(table, k, bins_x, wx, wy, 3), seg, ref, one_minus_eps
      )
      w = trans[m] * a  # T_i a_i.
      if shading > zero:
        lit = ka + kd * table.dtype.type(dif[row, m]) * q
        spec = ks * table.dtype.type(spe[row, m]) * q
        for c in range(3):
          col = _lookup(table, k, bins_x, wx, wy, c)
          rgb[m, c] += w * min(col * lit + spec, one)
      else:
        for c in range(3):
          rgb[m, c] += w * _lookup(table, k, bins_x, wx, wy, c)
      trans[m] *= one - a  # T_{i+1} = T_i (1 - a_i).


@numba.njit(parallel=True, nogil=True, cache=True)
def forward_kernel(
    idx,
    fx,
    fy,
    dif,
    spe,
    start,
    length,
    first_row,
    num_steps,
    table,
    bins_x,
    params,
    threshold,
    group,
    workers,
    rgb_out,
    log_t_out,
    steps_out,
):
  """rgb_out [T, tile, 3], log_t_out [T, tile], steps_out [T, tile] (samples
  composited per ray). params: (step, reference step, shading, ambient,
  diffuse, specular, 1 - epsneg) in the table's dtype; threshold: the
  termination transmittance (0: none). Worker w of ``workers`` (one per
  thread) takes groups w, w + workers, ...: neighbouring groups hold rays
  of similar length, so every worker gets the same share of the work
  (numba's prange hands each thread one contiguous block of iterations, and
  tiles near the end of the pool are much shorter)."""
  n_tiles, tile = start.shape
  groups = -(-tile // group)
  jobs = n_tiles * groups
  tiny = table.dtype.type(np.finfo(table.dtype).tiny)
  for wk in numba.prange(workers):
    for job in range(wk, jobs, workers):
      t = job // groups
      g0 = (job % groups) * group
      g1 = min(g0 + group, tile)
      r0 = first_row[t]
      num = num_steps[t]
      lo = start[t, g0:g1]
      hi = lo + length[t, g0:g1]
      _forward_group(
          idx[:, g0:g1],
          fx[:, g0:g1],
          fy[:, g0:g1],
          dif[:, g0:g1],
          spe[:, g0:g1],
          lo,
          hi,
          r0,
          num,
          table,
          bins_x,
          params,
          threshold,
          rgb_out[t, g0:g1],
          log_t_out[t, g0:g1],
          steps_out[t, g0:g1],
      )
      # log T_N (the output; T_N >= tiny keeps it finite where T underflows
      # without termination: the pixel is opaque either way).
      for m in range(g1 - g0):
        log_t_out[t, g0 + m] = np.log(max(log_t_out[t, g0 + m], tiny))


@numba.njit(nogil=True)
def _adjoint_group(
    idx,
    fx,
    fy,
    dif,
    spe,
    lo,
    hi,
    r0,
    steps,
    table,
    bins_x,
    params,
    rgb_total,
    g_rgb,
    g_log_t,
    acc,
):
  """Adds the group's share of the TF table's cotangent into acc [bins, 4]
  (cached_march.march_tile_vjp, each ray over its steps[m] samples, with
  the forward's arithmetic: the same T_i and a_i). rgb_total [n, 3],
  g_rgb [n, 3], g_log_t [n]: the forward's C and the cotangents of C and
  log T_N; the rest as _forward_group."""
  n = lo.shape[0]
  one = table.dtype.type(1.0)
  zero = table.dtype.type(0.0)
  q = table.dtype.type(1.0 / 65535.0)
  step, ref, shading, ka, kd, ks, one_minus_eps = params
  g_col = np.empty(4, table.dtype)
  col = np.empty(3, table.dtype)
  # Per ray: T_i and R = sum_{j>=i} T_j a_j c_j (colour still behind).
  trans = np.ones(n, table.dtype)
  behind = rgb_total.copy()
  most = 0
  for m in range(n):
    most = max(most, steps[m])
  for i in range(most):
    fi = table.dtype.type(i) * step
    row = r0 + i
    for m in range(n):
      if i >= steps[m]:
        continue
      seg = _segment(lo[m], hi[m], fi, step, zero)
      k = idx[row, m]
      wx = table.dtype.type(fx[row, m]) * q
      wy = table.dtype.type(fy[row, m]) * q
      lit = one
      spec = zero
      if shading > zero:
        lit = ka + kd * table.dtype.type(dif[row, m]) * q
        spec = ks * table.dtype.type(spe[row, m]) * q
      alpha = _lookup(table, k, bins_x, wx, wy, 3)
      a = zero
      if alpha != zero:
        a = _opacity(alpha, seg, ref, one_minus_eps)
      w = trans[m] * a  # T_i a_i.
      trans_next = trans[m] * (one - a)
      g_lt = g_log_t[m]
      for c in range(3):
        base = _lookup(table, k, bins_x, wx, wy, c)
        col[c] = min(base * lit + spec, one) if shading > zero else base
        behind[m, c] -= w * col[c]  # R_i.
        g_lt += g_rgb[m, c] * (behind[m, c] - trans_next * col[c])
        # dC/dc_i = T_i a_i, through the shading and its clip at 1.
        g_col[c] = g_rgb[m, c] * w
        if shading > zero:
          g_col[c] *= lit if base * lit + spec < one else zero
      # lt = (l / l_ref) log(1 - min(alpha, 1 - eps)).
      g_col[3] = zero
      if alpha < one_minus_eps:
        g_col[3] = -g_lt * (seg / ref) / (one - alpha)
      w00 = (one - wx) * (one - wy)
      w01 = wx * (one - wy)
      w10 = (one - wx) * wy
      w11 = wx * wy
      # alpha = 0: w = 0, so only the alpha channel gets a cotangent.
      for c in range(3 if w == zero else 0, 4):
        acc[k, c] += w00 * g_col[c]
        acc[k + 1, c] += w01 * g_col[c]
        acc[k + bins_x, c] += w10 * g_col[c]
        acc[k + bins_x + 1, c] += w11 * g_col[c]
      trans[m] = trans_next


@numba.njit(parallel=True, nogil=True, cache=True)
def adjoint_kernel(
    idx,
    fx,
    fy,
    dif,
    spe,
    start,
    length,
    first_row,
    steps,
    table,
    bins_x,
    params,
    rgb_total,
    g_rgb,
    g_log_t,
    group,
    g_out,
):
  """Adds the cotangent of the TF table into g_out [NUM_BLOCKS, bins, 4]:
  block b takes groups b, b + NUM_BLOCKS, ... (the same share of the work
  each; summed in a fixed order, so results do not depend on the number of
  threads)."""
  n_tiles, tile = start.shape
  groups = -(-tile // group)
  jobs = n_tiles * groups
  g_out[...] = table.dtype.type(0.0)
  for b in numba.prange(NUM_BLOCKS):
    for job in range(b, jobs, NUM_BLOCKS):
      t = job // groups
      g0 = (job % groups) * group
      g1 = min(g0 + group, tile)
      lo = start[t, g0:g1]
      _adjoint_group(
          idx[:, g0:g1],
          fx[:, g0:g1],
          fy[:, g0:g1],
          dif[:, g0:g1],
          spe[:, g0:g1],
          lo,
          lo + length[t, g0:g1],
          first_row[t],
          steps[t, g0:g1],
          table,
          bins_x,
          params,
          rgb_total[t, g0:g1],
          g_rgb[t, g0:g1],
          g_log_t[t, g0:g1],
          g_out[b],
      )
