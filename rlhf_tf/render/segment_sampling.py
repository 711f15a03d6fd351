"""Sampling a pre-integrated segment's ends and midpoint in numba kernels.

At ray parameter t (voxel coords frame[:3] + t frame[3:6], mm): trilinear
HU and its exact slope along the ray (voxel axes that clamp contribute 0:
``sampling.trilinear_packed``'s tangent), the JH coordinates u, v and
du / dt of ``preintegration.coords`` / ``coord_slope``, and with shading
the headlight terms d, s from the mean gradient
(``compositing.headlight_terms``) or, with settings.tensor_normals, from
the gradient's structure tensor (``compositing.tensor_headlight_terms``).

A sample fills one row of ``ends`` [rows, 5] (u, v, du, d, s: the layout
of ``native_segment_plan``) and of ``corner`` [rows, 4] (flat lower
corner, fz, fy, fx: where its 8 voxels are). HU and gradient come from the
same 8 vector loads (``native_trilinear``): ``sample_end`` keeps the
gradient [rows, 3] for ``shade_end``, which the march calls only for
segments that may be visible (the gradient's norm and the tensor terms
cost nothing for the others). ``_hu_and_slope`` / ``_gradient``: the same
in two steps without the kept gradient (the native cache build's).
``prefetch_end``: a hint to load a later sample's voxels.
"""

from __future__ import annotations

import math

import numba

from rlhf_tf.render.direct_kernels import (
    _corner,
    _normal_scale,
    _power,
    GRAD_MAX,
    HU_MIN,
    HU_RANGE,
    INT_POWER,
    NORMAL_EPS,
    SHADING,
    SHININESS,
    TENSOR,
)
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_trilinear import (
    prefetch_corners,
    structure_terms,
    trilinear_packed,
)
from rlhf_tf.render.preintegration import EDGE_X


@numba.njit(**HELPER)
def _strides(shape):
  """(sz, sy, sx) voxel strides, 0 along an axis of one voxel."""
  sx = 1 if shape[2] > 1 else 0
  sy = shape[2] if shape[1] > 1 else 0
  sz = shape[1] * shape[2] if shape[0] > 1 else 0
  return sz, sy, sx


@numba.njit(**HELPER)
def sample_consts(shape, fp, bins_x):
  """A render's constants of ``sample_at`` / ``prefetch_at``: (HU min,
  1 / HU range, bins_x, n - 1 and max(n - 2, 0) per axis as floats, Y, X,
  strides sz, sy, sx). Computed once per ray instead of per sample: LLVM
  cannot hoist them out of a march that stores into float64 scratch arrays
  (they might alias fp), so each sample paid a division and six int to
  float conversions (the same values, bit for bit)."""
  sz, sy, sx = _strides(shape)
  return (
      fp[HU_MIN],
      1.0 / fp[HU_RANGE],
      float(bins_x),
      (shape[0] - 1.0, shape[1] - 1.0, shape[2] - 1.0),
      (
          max(shape[0] - 2.0, 0.0),
          max(shape[1] - 2.0, 0.0),
          max(shape[2] - 2.0, 0.0),
      ),
      shape[1],
      shape[2],
      (sz, sy, sx),
  )


@numba.njit(**HELPER)
def _axis(c, top, low):
  """direct_kernels._axis with n - 1.0 = top, max(n - 2.0, 0.0) = low."""
  c = min(max(c, 0.0), top)
  i = min(max(math.floor(c), 0.0), low)
  return int(i), c - i


@numba.njit(**HELPER)
def _corner_at(cz, cy, cx, k):
  """direct_kernels._corner from sample_consts' k: (flat lower corner,
  fractions fz, fy, fx)."""
  top, low = k[3], k[4]
  iz, fz = _axis(cz, top[0], low[0])
  iy, fy = _axis(cy, top[1], low[1])
  ix, fx = _axis(cx, top[2], low[2])
  return (iz * k[5] + iy) * k[6] + ix, fz, fy, fx


@numba.njit(**HELPER)
def locate(k, frame, t):
  """(cz, cy, cx, flat lower corner, fz, fy, fx): where the sample at ray
  parameter t lies (voxel coordinates) and its 8 voxels (k:
  sample_consts'; frame: indexable, e.g. a tuple of frame[:6])."""
  cz = frame[0] + t * frame[3]
  cy = frame[1] + t * frame[4]
  cx = frame[2] + t * frame[5]
  base, fz, fy, fx = _corner_at(cz, cy, cx, k)
  return cz, cy, cx, base, fz, fy, fx


@numba.njit(**HELPER)
def sample_located(vol, k, frame, at):
  """((u, du), (flat lower corner, fz, fy, fx), (gz, gy, gx)): u, du, the
  voxels and the trilinear gradient (HU/mm) of the sample ``locate`` put
  at at, in registers (``_hu_slope_gradient_at`` stores them)."""
  cz, cy, cx, base, fz, fy, fx = at
  sz, sy, sx = k[7]
  hu, gz, gy, gx, pz, py, px = trilinear_packed(
      vol, base, sz, sy, sx, fz, fy, fx
  )
  # d HU / dt: the trilinear field's partials along unclamped axes.
  top = k[3]
  slope = 0.0
  if 0.0 < cz < top[0]:
    slope += frame[3] * pz
  if 0.0 < cy < top[1]:
    slope += frame[4] * py
  if 0.0 < cx < top[2]:
    slope += frame[5] * px
  inv_hu, bins_x = k[1], k[2]
  x = (hu - k[0]) * inv_hu
  u = min(max(x, 0.0), 1.0) * bins_x
  # preintegration.coord_slope: 0 on or within EDGE_X of the clip.
  du = slope * inv_hu * bins_x if EDGE_X < x < 1.0 - EDGE_X else 0.0
  return (u, du), (base, fz, fy, fx), (gz, gy, gx)


@numba.njit(**HELPER)
def sample_regs(vol, k, frame, t):
  """sample_located at ray parameter t."""
  return sample_located(vol, k, frame, locate(k, frame, t))


@numba.njit(**HELPER)
def _hu_slope_gradient_at(vol, k, frame, t, ends, row, corner):
  """Fills ends[row]' u and du and corner[row] at ray parameter t (k:
  sample_consts'); returns the trilinear gradient (gz, gy, gx) there
  (HU/mm)."""
  (u, du), at, g = sample_regs(vol, k, frame, t)
  ends[row, 0] = u
  ends[row, 2] = du
  corner[row, 0] = at[0]
  corner[row, 1] = at[1]
  corner[row, 2] = at[2]
  corner[row, 3] = at[3]
  return g


@numba.njit(**HELPER)
def _hu_slope_gradient(vol, shape, frame, t, fp, bins_x, ends, row, corner):
  """Fills ends[row]' u and du and corner[row] at ray parameter t; returns
  the trilinear gradient (gz, gy, gx) there (HU/mm)."""
  k = sample_consts(shape, fp, bins_x)
  return _hu_slope_gradient_at(vol, k, frame, t, ends, row, corner)


@numba.njit(**HELPER)
def gradient_coord(fp, bins_y, g):
  """(v, |g|^2, |g|): v of preintegration.coords of |g| (g = (gz, gy, gx),
  the trilinear gradient, HU/mm)."""
  gz, gy, gx = g
  sq = gz * gz + gy * gy + gx * gx
  norm = math.sqrt(max(sq, 1e-24))  # safe_math.floored_norm.
  y = norm / fp[GRAD_MAX]
  return min(max(y * bins_y - 0.5, 0.0), bins_y - 1.0), sq, norm


@numba.njit(**HELPER)
def _shade_values(vol, shape, d, fp, ip, bins_y, at, g):
  """(v, d, s) of a sample: v of preintegration.coords of |g| (g = (gz,
  gy, gx), the trilinear gradient) and, with shading, its headlight terms
  d, s (0.0, 0.0 without). at: (flat lower corner, fz, fy, fx), for the
  structure tensor."""
  gz, gy, gx = g
  v, sq, norm = gradient_coord(fp, bins_y, g)
  if not ip[SHADING]:
    return v, 0.0, 0.0
  eps2 = fp[NORMAL_EPS] * fp[NORMAL_EPS]
  if ip[TENSOR]:  # Structure tensor seen along the view.
    sz, sy, sx = _strides(shape)
    q, trace = structure_terms(
        vol, at[0], sz, sy, sx, at[1], at[2], at[3], d[0], d[1], d[2]
    )
    root_q = math.sqrt(q) if q > 0.0 else 0.0
    diffuse = min(root_q / math.sqrt(max(trace, eps2)), 1.0)
  else:
    cos = (gz * d[0] + gy * d[1] + gx * d[2]) / _normal_scale(sq, norm, eps2)
    diffuse = min(abs(cos), 1.0)
  return v, diffuse, _power(max(diffuse, 1e-12), fp[SHININESS], ip[INT_POWER])


@numba.njit(**HELPER)
def _v_and_shading(vol, shape, d, fp, ip, bins_y, ends, row, corner, g):
  """Fills ends[row]' v (preintegration.coords of |g|, g = (gz, gy, gx))
  and, with shading, its headlight terms d, s."""
  at = (int(corner[row, 0]), corner[row, 1], corner[row, 2], corner[row, 3])
  v, diffuse, spec = _shade_values(vol, shape, d, fp, ip, bins_y, at, g)
  ends[row, 1] = v
  if ip[SHADING]:
    ends[row, 3] = diffuse
    ends[row, 4] = spec


@numba.njit(**HELPER)
def sample_end(vol, shape, frame, t, fp, bins_x, ends, row, corner, grads):
  """Fills ends[row]' u, du, corner[row] and grads[row] ([rows, 3]: the
  trilinear gradient, for ``shade_end``) at ray parameter t."""
  g = _hu_slope_gradient(vol, shape, frame, t, fp, bins_x, ends, row, corner)
  grads[row, 0], grads[row, 1], grads[row, 2] = g


@numba.njit(**HELPER)
def sample_at(vol, k, frame, t, ends, row, corner, grads):
  """sample_end with sample_consts' k (the same values, bit for bit)."""
  g = _hu_slope_gradient_at(vol, k, frame, t, ends, row, corner)
  grads[row, 0], grads[row, 1], grads[row, 2] = g


@numba.njit(**HELPER)
def shade_end(vol, shape, d, fp, ip, bins_y, ends, row, corner, grads):
  """Fills ends[row]' v, d, s from ``sample_end``'s gradient."""
  g = (grads[row, 0], grads[row, 1], grads[row, 2])
  _v_and_shading(vol, shape, d, fp, ip, bins_y, ends, row, corner, g)


@numba.njit(**HELPER)
def _hu_and_slope(vol, shape, frame, t, fp, bins_x, ends, row, corner):
  """Fills ends[row]' u and du and corner[row] (for ``_gradient``) at ray
  parameter t."""
  _hu_slope_gradient(vol, shape, frame, t, fp, bins_x, ends, row, corner)


@numba.njit(**HELPER)
def _gradient(vol, shape, d, fp, ip, bins_y, ends, row, corner):
  """Fills ends[row]' v and, with shading, d, s from the 8 voxels at
  corner[row] (``_hu_and_slope``'s)."""
  sz, sy, sx = _strides(shape)
  _, gz, gy, gx, _, _, _ = trilinear_packed(
      vol,
      int(corner[row, 0]),
      sz,
      sy,
      sx,
      corner[row, 1],
      corner[row, 2],
      corner[row, 3],
  )
  g = (gz, gy, gx)
  _v_and_shading(vol, shape, d, fp, ip, bins_y, ends, row, corner, g)


@numba.njit(**HELPER)
def prefetch_end(vol, shape, frame, t):
  """Asks the cache for the 8 voxels a sample at ray parameter t reads
  (no result: ``native_trilinear.prefetch_corners``)."""
  base, sz, sy, sx, _, _, _ = _corner(
      frame[0] + t * frame[3],
      frame[1] + t * frame[4],
      frame[2] + t * frame[5],
      shape,
  )
  prefetch_corners(vol, base, sz, sy, sx)


@numba.njit(**HELPER)
def prefetch_at(vol, k, frame, t):
  """prefetch_end with sample_consts' k."""
  base, _, _, _ = _corner_at(
      frame[0] + t * frame[3],
      frame[1] + t * frame[4],
      frame[2] + t * frame[5],
      k,
  )
  sz, sy, sx = k[7]
  prefetch_corners(vol, base, sz, sy, sx)
