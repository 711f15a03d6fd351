"""The numba kernels of the native point-sampled cached march
(``rlhf_tf.render.cached_native``: the formulas and why; here the code).

Forward: per group of GROUP rays, front to back, a_i = alpha (a whole
segment at the reference step) or -expm1((l_i / l_ref) log1p(-alpha)),
T_{i+1} = T_i (1 - a_i), C += T_i a_i c_i; stop at T_i < threshold; skip a
sample whose four bins have alpha = 0. Adjoint: the same walk over the
samples composited, R_i = C - sum_{j<=i} T_j a_j c_j,
dC/dc_i = T_i a_i, dC/dlt_i = R_i - T_{i+1} c_i, scatter-added into
NUM_BLOCKS partial tables.

The adjoint walks one ray of a group at a time, its T_i and R_i in
registers (walked row by row over the group's rays, they went through
memory that the scatter-adds into the table might alias), and addresses the
pool and the table through flat views with unsigned indices (numba's 2D
indexing pays a negative-index wraparound and a stride multiply per load);
a sample at alpha = 0 (86 % of those composited on Cranium) leaves T and R
as they are and scatters only its alpha cotangent; the samples of whole
segments (all but a ray's first and last) skip the segment-length
arithmetic; a lookup's 16 table values and its 16 scatter-adds go as 4-lane
vectors, a bin's RGBA each (``native_rgba``: bit for bit the scalar
arithmetic). Cranium 256^2, default step, one thread, CPU time: 146 ->
~75 ms (forward: 43 ms).
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_rgba import bilinear_rgba, scatter_rgba

# The adjoint accumulates into NUM_BLOCKS partial tables (task b adds into
# table b % NUM_BLOCKS), summed in a fixed order.
NUM_BLOCKS = 8


@numba.njit(**HELPER)
def _lookup(table, k, bins_x, fx, fy, c):
  """Channel c of the bilinear lookup of flat bins k, k + 1, k + bins_x,
  k + bins_x + 1 of table [bins, 4] (sampling.bilinear_lookup)."""
  a, b = table[k, c], table[k + 1, c]
  bottom = a + fx * (b - a)
  a, b = table[k + bins_x, c], table[k + bins_x + 1, c]
  top = a + fx * (b - a)
  return bottom + fy * (top - bottom)


@numba.njit(**HELPER)
def _transparent(table, k, bins_x):
  """Whether the four bins of a lookup all have alpha = 0."""
  zero = table.dtype.type(0.0)
  return (
      table[k, 3] == zero
      and table[k + 1, 3] == zero
      and table[k + bins_x, 3] == zero
      and table[k + bins_x + 1, 3] == zero
  )


@numba.njit(**HELPER)
def _segment(lo, hi, fi, step, zero):
  """l_i: the part of sample i's segment [fi, fi + step) inside [lo, hi)
  (sampling.segment_length)."""
  return min(max(hi - fi, zero), step) - min(max(lo - fi, zero), step)


@numba.njit(**HELPER)
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


@kernel(parallel=True, nogil=True)
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


@numba.njit(nogil=True, **HELPER)
def _shade(base, lit, spec, one, zero):
  """(min(base lit + spec, 1), its derivative w.r.t. base)."""
  x = base * lit + spec
  return min(x, one), lit if x < one else zero


@numba.njit(nogil=True, **HELPER)
def _adjoint_sample(
    idx, fx, fy, dif, spe, p, table, row_bins, params, seg, seg_ref, g_rgb,
    g_log_t, state, acc,
):  # fmt: skip
  """One sample of _adjoint_ray at flat position p, of segment length seg
  (seg_ref = seg / ref): scatters its cotangents into acc and returns the
  ray's state (T_{i+1}, R_{i+1} [3], g_log_t + g . R_{i+1})."""
  one = table.dtype.type(1.0)
  zero = table.dtype.type(0.0)
  q = table.dtype.type(1.0 / 65535.0)
  _, ref, shading, ka, kd, ks, one_minus_eps = params
  g_0, g_1, g_2 = g_rgb
  trans, r_0, r_1, r_2, g_behind = state
  k = np.uint64(4) * np.uint64(idx[p])
  k2 = k + row_bins
  wx = table.dtype.type(fx[p]) * q
  wy = table.dtype.type(fy[p]) * q
  lit = one
  spec = zero
  if shading > zero:
    lit = ka + kd * table.dtype.type(dif[p]) * q
    spec = ks * table.dtype.type(spe[p]) * q
  col_0, col_1, col_2, alpha = bilinear_rgba(table, k, k2, wx, wy)
  s_0 = s_1 = s_2 = one  # d c_i / d base, through the shading's clip.
  if shading > zero:
    col_0, s_0 = _shade(col_0, lit, spec, one, zero)
    col_1, s_1 = _shade(col_1, lit, spec, one, zero)
    col_2, s_2 = _shade(col_2, lit, spec, one, zero)
  w00 = (one - wx) * (one - wy)
  w01 = wx * (one - wy)
  w10 = (one - wx) * wy
  w11 = wx * wy
  g_own = g_0 * col_0 + g_1 * col_1 + g_2 * col_2
  if alpha != zero:
    a = _opacity(alpha, seg, ref, one_minus_eps)
    w = trans * a  # T_i a_i = dC/dc_i.
    trans = trans * (one - a)  # T_{i+1}.
    r_0 -= w * col_0
    r_1 -= w * col_1
    r_2 -= w * col_2
    g_behind = g_log_t + g_0 * r_0 + g_1 * r_1 + g_2 * r_2
    g_alpha = zero
    if alpha < one_minus_eps:
      g_alpha = (trans * g_own - g_behind) * seg_ref / (one - alpha)
    scatter_rgba(
        acc,
        k,
        k2,
        w00,
        w01,
        w10,
        w11,
        g_0 * w * s_0,
        g_1 * w * s_1,
        g_2 * w * s_2,
        g_alpha,
    )
  else:
    # a_i = 0: T and R stay, dC/dc_i = 0; lt = (l / l_ref) log(1 - alpha).
    g_alpha = (trans * g_own - g_behind) * seg_ref
    scatter_rgba(acc, k, k2, w00, w01, w10, w11, zero, zero, zero, g_alpha)
  return trans, r_0, r_1, r_2, g_behind


@numba.njit(nogil=True, **HELPER)
def _adjoint_ray(
    idx, fx, fy, dif, spe, p, stride, lo, hi, num, table, bins_x, params,
    rgb_total, g_rgb, g_log_t, acc,
):  # fmt: skip
  """Adds one ray's share of the TF table's cotangent into acc [bins * 4]
  (flat; cached_march.march_tile_vjp over the ray's num samples, with the
  forward's arithmetic: the same T_i and a_i). idx ... spe: the pool fields,
  flat, the ray's sample i at p + i stride; lo, hi: its chord; rgb_total
  [3], g_rgb [3], g_log_t: the forward's C and the cotangents of C and
  log T_N. The ray's state (T_i, R_i) stays in registers: one ray at a
  time, not its group's rays in turn. Samples [i0, i1) have whole
  segments (lo <= i step, hi - i step >= step: _segment is step exactly),
  the others are cut by the chord."""
  zero = table.dtype.type(0.0)
  step, ref = params[0], params[1]
  row_bins = np.uint64(4) * np.uint64(bins_x)
  g = (g_rgb[0], g_rgb[1], g_rgb[2])
  r_0, r_1, r_2 = rgb_total[0], rgb_total[1], rgb_total[2]  # R_i.
  # (T_i, R_i, and dL/dlt_i but for the sample's own colour: g_log_t +
  # g . R_{i+1}).
  state = (
      table.dtype.type(1.0), r_0, r_1, r_2,
      g_log_t + g[0] * r_0 + g[1] * r_1 + g[2] * r_2,
  )  # fmt: skip
  i0 = 0
  while i0 < num and not lo <= table.dtype.type(i0) * step:
    i0 += 1
  i1 = num
  while i1 > i0 and not hi - table.dtype.type(i1 - 1) * step >= step:
    i1 -= 1
  for i in range(i0):
    seg = _segment(lo, hi, table.dtype.type(i) * step, step, zero)
    state = _adjoint_sample(
        idx, fx, fy, dif, spe, p + np.uint64(i) * stride, table, row_bins,
        params, seg, seg / ref, g, g_log_t, state, acc,
    )  # fmt: skip
  whole = step / ref
  for i in range(i0, i1):
    state = _adjoint_sample(
        idx, fx, fy, dif, spe, p + np.uint64(i) * stride, table, row_bins,
        params, step, whole, g, g_log_t, state, acc,
    )  # fmt: skip
  for i in range(i1, num):
    seg = _segment(lo, hi, table.dtype.type(i) * step, step, zero)
    state = _adjoint_sample(
        idx, fx, fy, dif, spe, p + np.uint64(i) * stride, table, row_bins,
        params, seg, seg / ref, g, g_log_t, state, acc,
    )  # fmt: skip


@kernel(parallel=True, nogil=True)
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
  # Flat views: unsigned flat indices address without numba's
  # negative-index wraparound and per-dimension strides.
  stride = np.uint64(idx.shape[1])
  idx_f, fx_f, fy_f = idx.reshape(-1), fx.reshape(-1), fy.reshape(-1)
  dif_f, spe_f = dif.reshape(-1), spe.reshape(-1)
  table_f = table.reshape(-1)
  for b in numba.prange(NUM_BLOCKS):
    acc = g_out[b].reshape(-1)
    for job in range(b, jobs, NUM_BLOCKS):
      t = job // groups
      g0 = (job % groups) * group
      row = np.uint64(first_row[t]) * stride
      for m in range(g0, min(g0 + group, tile)):
        lo = start[t, m]
        _adjoint_ray(
            idx_f,
            fx_f,
            fy_f,
            dif_f,
            spe_f,
            row + np.uint64(m),
            stride,
            lo,
            lo + length[t, m],
            steps[t, m],
            table_f,
            bins_x,
            params,
            rgb_total[t, m],
            g_rgb[t, m],
            g_log_t[t, m],
            acc,
        )
