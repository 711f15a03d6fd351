"""One pre-integrated segment's forward in registers: ``native_segment_plan``'s
split and transparency test and ``native_segment_optics``' optics on
tuples of scalars instead of scratch arrays, for the cached forward march
(``native_segment_forward``).

The same operations, in the same order and precision, on SSA values
(tuples) instead of the scratch arrays ends [3, 5], points [5, 4],
lengths [4] and taus [2]: the results are those of ``surely_transparent``,
``split`` / ``split_shading`` and ``segment_optics`` bit for bit
(tests/test_native_segment_regs.py). By itself no faster (Cranium 256^2:
paired ratio ~1.0; LLVM kept the scratch values in registers already),
but the walk can test a segment's stored box (``native_segment_boxes``)
before loading its ends, and hold a classified segment's table reads
while it waits for the next one.

An end is (u, v, du) in float64 (the cache's values rounded to the
table's dtype first, as ``load_ends``); a point is (u, v) or (u, v, d, s).
"""

from __future__ import annotations

import numba

from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_pv import piece_means
from rlhf_tf.render.native_segment_math import _index, TINY_DU
from rlhf_tf.render.native_segment_optics import _optics4, optics_pair
from rlhf_tf.render.native_segment_plan import _column, _row, extremum

_ZEROS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@numba.njit(**HELPER)
def _half_columns(a, c, half, bins_x, c0, c1):
  """(c0, c1) widened by the columns the half a -> c can read."""
  u_a, u_c = a[0], c[0]
  du = u_c - u_a
  s_a, s_c = a[2] * half, c[2] * half
  reach = 4.0 / 27.0 * (abs(s_a - du) + abs(s_c - du))
  c0 = min(c0, _column(min(u_a, u_c) - reach - 1.0, bins_x))
  c1 = max(c1, _column(max(u_a, u_c) + reach + 1.0, bins_x) + 1)
  return c0, c1


@numba.njit(**HELPER)
def box(f, mid, b, half, bins_x, bins_y):
  """(c0, c1, r0, r1): the columns c0 .. c1 - 1 and gradient rows r0 ..
  r1 - 1 of native_segment_plan.surely_transparent's box of the ends f,
  mid, b ((u, v, du) each) of halves of length half."""
  c0, c1 = _half_columns(f, mid, half, bins_x, bins_x, 0)
  c0, c1 = _half_columns(mid, b, half, bins_x, c0, c1)
  v_lo = min(f[1], min(mid[1], b[1]))
  v_hi = max(f[1], max(mid[1], b[1]))
  return c0, c1, _row(v_lo - 1.0, bins_y), _row(v_hi + 1.0, bins_y) + 2


@numba.njit(**HELPER)
def surely_transparent(occ, bins_x, bins_y, f, mid, b, half):
  """native_segment_plan.surely_transparent of the ends f, mid, b."""
  c0, c1, r0, r1 = box(f, mid, b, half, bins_x, bins_y)
  return occ[r1, c1] - occ[r0, c1] - occ[r1, c0] + occ[r0, c0] == 0


@numba.njit(**HELPER)
def half_split(a, c, half, bins_x, min_den):
  """(tau, crest point (u, v)) of the half a -> c (native_segment_plan.
  split's)."""
  tau, peak = extremum(a[0], c[0], a[2] * half, c[2] * half, min_den)
  return tau, (min(max(peak, 0.0), float(bins_x)), a[1] + tau * (c[1] - a[1]))


@numba.njit(**HELPER)
def lerp(x_a, x_c, tau):
  return x_a + tau * (x_c - x_a)


@numba.njit(**HELPER)
def lookup(table, bins_x, bins_y, f, b, length):
  """native_segment_plan._lookup of the piece from point f to b."""
  if length == 0.0:
    return _ZEROS
  vbar = 0.5 * (f[1] + b[1])
  k_f, fu_f, fv = _index(f[0], vbar, bins_x, bins_y)
  k_b, fu_b, _ = _index(b[0], vbar, bins_x, bins_y)
  du = b[0] - f[0]
  return piece_means(
      table, k_f, k_b, bins_x, fv, fu_f, fu_b, du, abs(du) > TINY_DU
  )


@numba.njit(**HELPER)
def prepare(table, bins_x, bins_y, f, mid, b, half, min_den, shades, shading):
  """(means, lengths, d, s) of the segment through the ends f, mid, b
  ((u, v, du) each) of halves of length half: native_segment_plan.split
  (+ split_shading of shades ((d, s) of f, mid, b) when shading) and its
  pieces' table reads (_lookup): the inputs of _optics4."""
  tau_0, p_1 = half_split(f, mid, half, bins_x, min_den)
  tau_1, p_3 = half_split(mid, b, half, bins_x, min_den)
  l_0, l_1 = tau_0 * half, (1.0 - tau_0) * half
  l_2, l_3 = tau_1 * half, (1.0 - tau_1) * half
  p_0, p_2, p_4 = (f[0], f[1]), (mid[0], mid[1]), (b[0], b[1])
  sf, sm, sb = shades
  if shading:
    ds = (sf[0], lerp(sf[0], sm[0], tau_0), sm[0], lerp(sm[0], sb[0], tau_1),
          sb[0])  # fmt: skip
    ss = (sf[1], lerp(sf[1], sm[1], tau_0), sm[1], lerp(sm[1], sb[1], tau_1),
          sb[1])  # fmt: skip
  else:
    ds = ss = (0.0, 0.0, 0.0, 0.0, 0.0)
  means = (
      lookup(table, bins_x, bins_y, p_0, p_1, l_0),
      lookup(table, bins_x, bins_y, p_1, p_2, l_1),
      lookup(table, bins_x, bins_y, p_2, p_3, l_2),
      lookup(table, bins_x, bins_y, p_3, p_4, l_3),
  )
  return means, (l_0, l_1, l_2, l_3), ds, ss


@numba.njit(**HELPER)
def segment(table, bins_x, bins_y, f, mid, b, half, min_den, shades, optics):
  """(lt, e_0, e_1, e_2, a) of the segment through the ends f, mid, b
  (``prepare``'s arguments): native_segment_plan.split (+ split_shading)
  and native_segment_optics.segment_optics."""
  shading, ka, kd, ks = optics
  means, ls, ds, ss = prepare(
      table, bins_x, bins_y, f, mid, b, half, min_den, shades, shading
  )
  return _optics4(*means, ls, ds, ss, shading, ka, kd, ks)


@numba.njit(**HELPER)
def pair(a, b, optics):
  """(lt, e_0, e_1, e_2, a) of two prepared segments a, b (``prepare``'s
  results) at once (native_segment_optics.optics_pair): a's, then b's."""
  shading, ka, kd, ks = optics
  means_a, ls_a, ds_a, ss_a = a
  means_b, ls_b, ds_b, ss_b = b
  return optics_pair(
      means_a, means_b, ls_a + ls_b, ds_a + ds_b, ss_a + ss_b, shading, ka,
      kd, ks,
  )  # fmt: skip
