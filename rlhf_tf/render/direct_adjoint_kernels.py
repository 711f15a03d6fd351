"""Numba kernels of the native direct renderer's adjoint
(rlhf_tf.render.direct_native; the forward and the per-sample helpers they
share are in ``direct_kernels``).

Each ray is walked again over exactly the samples the forward composited
(``direct_kernels._visit`` decides, as in the forward; the forward returns
each ray's sample count), so the gradient is exact for the rendered
(skipped, terminated) function: the TF table's cotangent (one partial table
per task, summed by the caller in a fixed order) and the packed volume's.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rlhf_tf.render.direct_kernels import (
    _corner,
    _lookup,
    _normal_scale,
    _opacity,
    _power,
    _ray,
    _tf_axis,
    _trilinear,
    _visit,
    GRAD_MAX,
    HU_MIN,
    HU_RANGE,
    INT_POWER,
    KA,
    KD,
    KS,
    NORMAL_EPS,
    ONE_MINUS_EPS,
    REF,
    SHADING,
    SHININESS,
)
from rlhf_tf.render.native_cache import kernel


@kernel(nogil=True)
def _adjoint_ray(
    p, vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
    steps, rgb_total, g_rgb, g_log_t, g_table, g_vol, want_table, want_vol,
):  # fmt: skip
  """Adds ray p's cotangents of the TF table (g_table [bins, 4]) and of the
  packed volume (g_vol [voxels, 4]) given those of its colour g_rgb [N, 3]
  and log transmittance g_log_t [N]. R (colour still behind sample i) =
  the total less what samples before i added."""
  ref = fp[REF]
  shading = ip[SHADING]
  by, bx = bins[0], bins[1]
  eps2 = fp[NORMAL_EPS] * fp[NORMAL_EPS]
  inv_hu, inv_grad = 1.0 / fp[HU_RANGE], 1.0 / fp[GRAD_MAX]
  frame = np.empty(9)
  base_col = np.empty(3)
  col = np.empty(3)
  g_col = np.empty(4)
  d = directions[p]
  base_t, start, end = _ray(origins[p], d, fp, phase[p], frame)
  trans = 1.0
  behind = np.empty(3)
  for c in range(3):
    behind[c] = rgb_total[p, c]
  i = 0
  exit_t, occupied = -np.inf, True
  while i < steps[p]:
    i, empty, seg, cz, cy, cx, exit_t, occupied = _visit(
        i, base_t, start, end, frame, occ, nb, fp, ip, exit_t, occupied
    )
    if empty:
      continue
    base, sz, sy, sx, fz, fy, fx = _corner(cz, cy, cx, shape)
    hu = _trilinear(vol, base, sz, sy, sx, fz, fy, fx, 0)
    gz = _trilinear(vol, base, sz, sy, sx, fz, fy, fx, 1)
    gy = _trilinear(vol, base, sz, sy, sx, fz, fy, fx, 2)
    gx = _trilinear(vol, base, sz, sy, sx, fz, fy, fx, 3)
    sq = gz * gz + gy * gy + gx * gx
    norm = math.sqrt(max(sq, 1e-24))
    ix, wx, dwx = _tf_axis((hu - fp[HU_MIN]) * inv_hu, bx)
    iy, wy, dwy = _tf_axis(norm * inv_grad, by)
    k = iy * bx + ix
    alpha = _lookup(table, k, bx, wx, wy, 3)
    weight = 0.0
    if alpha != 0.0:
      weight = trans * _opacity(alpha, seg, fp)
    trans_next = trans - weight
    lit, gloss, ndl, cos, rs = 1.0, 0.0, 0.0, 0.0, 0.0
    if shading:
      rs = 1.0 / _normal_scale(sq, norm, eps2)
      cos = (gz * d[0] + gy * d[1] + gx * d[2]) * rs
      ndl = min(abs(cos), 1.0)
      lit = fp[KA] + fp[KD] * ndl
      gloss = fp[KS] * _power(max(ndl, 1e-12), fp[SHININESS], ip[INT_POWER])
    # lt enters C through a_i = 1 - e^lt and every later T_j; and log T_N.
    g_lt = g_log_t[p]
    for c in range(3):
      base_col[c] = _lookup(table, k, bx, wx, wy, c)
      col[c] = min(base_col[c] * lit + gloss, 1.0) if shading else base_col[c]
      behind[c] -= weight * col[c]  # R_{i+1}.
      g_lt += g_rgb[p, c] * (behind[c] - trans_next * col[c])
    # Cotangents of the shaded colour (dC/dc_i = T_i a_i), of the TF's rgb
    # and of the shading factors, through the clip at 1.
    g_lit, g_gloss = 0.0, 0.0
    for c in range(3):
      gc = g_rgb[p, c] * weight
      if shading:
        if base_col[c] * lit + gloss < 1.0:
          g_col[c] = gc * lit
          g_lit += gc * base_col[c]
          g_gloss += gc
        else:
          g_col[c] = 0.0
      else:
        g_col[c] = gc
    g_col[3] = 0.0
    if alpha < fp[ONE_MINUS_EPS]:
      g_col[3] = -g_lt * (seg / ref) / (1.0 - alpha)
    if want_table:
      w00 = (1.0 - wx) * (1.0 - wy)
      w01 = wx * (1.0 - wy)
      w10 = (1.0 - wx) * wy
      w11 = wx * wy
      for c in range(4):
        g_table[k, c] += w00 * g_col[c]
        g_table[k + 1, c] += w01 * g_col[c]
        g_table[k + bx, c] += w10 * g_col[c]
        g_table[k + bx + 1, c] += w11 * g_col[c]
    if not want_vol:
      trans = trans_next
      continue
    # TF coordinates: d rgba / d wx, d wy of the bilinear lookup.
    g_wx, g_wy = 0.0, 0.0
    kk = k + bx
    for c in range(4):
      t00, t01 = table[k, c], table[k + 1, c]
      t10, t11 = table[kk, c], table[kk + 1, c]
      g_wx += g_col[c] * ((1.0 - wy) * (t01 - t00) + wy * (t11 - t10))
      bottom = t00 + wx * (t01 - t00)
      top = t10 + wx * (t11 - t10)
      g_wy += g_col[c] * (top - bottom)
    g_hu = g_wx * dwx * inv_hu
    g_norm = g_wy * dwy * inv_grad
    g_g0, g_g1, g_g2 = 0.0, 0.0, 0.0
    if sq > 1e-24:
      g_g0 = g_norm * gz / norm
      g_g1 = g_norm * gy / norm
      g_g2 = g_norm * gx / norm
    if shading:
      g_ndl = fp[KD] * g_lit
      if ndl > 1e-12:
        g_ndl += (
            fp[KS]
            * g_gloss
            * fp[SHININESS]
            * _power(ndl, fp[SHININESS] - 1.0, ip[INT_POWER] - 1)
        )
      g_cos = 0.0
      if abs(cos) < 1.0:  # d|cos| / dcos = 1 at 0, as jnp.abs (g = 0 in air).
        g_cos = g_ndl if cos >= 0.0 else -g_ndl
      # cos = (g . d) rs, rs = max(|g|^2, eps^2)^(-1/2).
      dot = (gz * d[0] + gy * d[1] + gx * d[2]) * rs * rs * rs
      if sq <= eps2:
        dot = 0.0
      g_g0 += g_cos * (d[0] * rs - dot * gz)
      g_g1 += g_cos * (d[1] * rs - dot * gy)
      g_g2 += g_cos * (d[2] * rs - dot * gx)
    g_val = (g_hu, g_g0, g_g1, g_g2)
    for dz in range(2):
      wz = fz if dz else 1.0 - fz
      for dy in range(2):
        wyy = fy if dy else 1.0 - fy
        for dx in range(2):
          wxx = fx if dx else 1.0 - fx
          v = base + dz * sz + dy * sy + dx * sx
          wt = wz * wyy * wxx
          for c in range(4):
            g_vol[v, c] += wt * g_val[c]
    trans = trans_next


@kernel(parallel=True, nogil=True)
def adjoint_table_kernel(
    vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
    steps, rgb_total, g_rgb, g_log_t, g_out,
):  # fmt: skip
  """g_out [B, bins, 4]: task b adds the TF-table cotangent of rays b,
  b + B, ... into g_out[b] (summed by the caller in a fixed order)."""
  n_blocks = g_out.shape[0]
  n = origins.shape[0]
  g_out[...] = 0.0
  dummy = np.zeros((0, 4))
  for b in numba.prange(n_blocks):
    for p in range(b, n, n_blocks):
      _adjoint_ray(
          p, vol, shape, table, bins, origins, directions, phase, occ, nb,
          fp, ip, steps, rgb_total, g_rgb, g_log_t, g_out[b], dummy, True,
          False,
      )  # fmt: skip


@kernel(nogil=True)
def adjoint_volume_kernel(
    vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
    steps, rgb_total, g_rgb, g_log_t, g_out,
):  # fmt: skip
  """g_out [voxels, 4]: the packed volume's cotangent (one thread: every
  ray scatters into the one volume-sized buffer)."""
  g_out[...] = 0.0
  dummy = np.zeros((0, 4))
  for p in range(origins.shape[0]):
    _adjoint_ray(
        p, vol, shape, table, bins, origins, directions, phase, occ, nb, fp,
        ip, steps, rgb_total, g_rgb, g_log_t, dummy, g_out, False, True,
    )  # fmt: skip
