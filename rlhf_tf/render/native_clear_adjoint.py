"""The adjoint of transparent segments in the native pre-integrated cached
march (``native_segment_adjoint``'s walk; the segment's pieces:
``native_segment_plan``).

A transparent segment (every bin its pieces read has V_0 = 0: e = 0,
lt = 0) still passes a cotangent to the (P, V) table: raising sigma there
would show. With mean = 0, ``native_segment_math.piece_adjoint``'s formulas
reduce (tau = 0, phi = 1, a = 0; shaded: w = 1/2 and min(e lit + ks s a, a)
ties at 0 and splits g_e in halves, JAX's rule) to a cotangent of the
piece's mean (P, V) quotient that is linear in the ray's cotangents,

  g_mean = l A + l s B + l d C,   (s, d: the shading terms at the piece's
                                   middle; B = C = 0 unshaded)
  A = (-g_lt + g_e . 1 / 2, ka g_e / 2),  B = (ks g_e . 1 / 2, 0, 0, 0),
  C = (0, kd g_e / 2)                     (shaded; unshaded A = (-g_lt, g_e))

with A, B, C constant along a ray between two segments that are not
transparent (T_i and R_i only change there). And a piece within one
intensity column i reads one bin per gradient row j, j + 1 at both ends:
its mean quotient's cotangent reaches P with opposite signs at its ends
(they cancel exactly) and V with weights (fu_b - fu_f) / du = 1 (or 1/2 +
1/2 below TINY_DU), so it adds exactly

  acc[j, i, V] += (1 - fv) g_mean,   acc[j + 1, i, V] += fv g_mean.

Most transparent pieces (air, tissue the TF hides) are such, and they
follow each other in the same bin: each ray keeps the sums
(sum l (1 - fv), ... l s ..., ... l d ...; likewise fv) of its pieces in
one pending bin and adds them times A, B, C when it moves to another bin
or its cotangents change (``flush``), rather than 32 read-modify-writes of
the table's cotangent per piece. Pieces across a column boundary take
the per-piece scatter (``scatter_piece``, 4-lane adds). A segment that
split would leave whole (no half brackets an extremum: ``unsplit``, most
of them) is classified from its ends without it (``clear_unsplit``: the
same operations, bit for bit); so is, unshaded, one whose pieces all read
one column and row pair (``one_bin``: the same sums up to rounding). The
same sums in another order: the cotangent equals the per-piece one up to
rounding (tests/test_cached_native_segments.py against the XLA march,
~1e-13 in float64).
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_pv_scatter import scatter_pv
from rlhf_tf.render.native_segment_math import TINY_DU
from rlhf_tf.render.native_segment_plan import (  # pylint: disable=g-importing-member
    _column,
    _row,
    D,
    NUM_PIECES,
    S,
    U,
    V,
)

# Columns of a ray's pending sums: lower row (l w, l w s, l w d), then the
# upper row's, w = 1 - fv and fv.
NUM_PENDING = 6


@numba.njit(**HELPER)
def _scatter(acc, bins_x, bins_y, u_f, u_b, vbar, g_mean):
  """Adds a transparent piece's cotangent into acc [bins, 8] from that of
  its mean (P, V) difference quotient, g_mean [4] (piece_adjoint's last
  step; the shading weight's sigma terms are 0 there): the piece from u_f
  to u_b at mean gradient coordinate vbar. 4-lane adds
  (``native_pv_scatter``; a lane whose addend is an exact 0 keeps its
  value: the P columns where the quotient falls back to the mean of V,
  |du| <= TINY_DU, and the upper gradient row at fv = 0)."""
  j = min(max(int(vbar), 0), bins_y - 2)
  i_f = min(max(int(u_f), 0), bins_x - 1)
  i_b = min(max(int(u_b), 0), bins_x - 1)
  k_f, k_b = j * bins_x + i_f, j * bins_x + i_b
  fv = vbar - j
  du = u_b - u_f
  w00 = 1.0 - fv
  if abs(du) > TINY_DU:
    fu_f, fu_b = u_f - i_f, u_b - i_b
    g0, g1 = g_mean[0] / du, g_mean[1] / du
    g2, g3 = g_mean[2] / du, g_mean[3] / du
    p_b = (g0, g1, g2, g3)
    p_f = (-g0, -g1, -g2, -g3)
    v_f = (-g0 * fu_f, -g1 * fu_f, -g2 * fu_f, -g3 * fu_f)
    v_b = (g0 * fu_b, g1 * fu_b, g2 * fu_b, g3 * fu_b)
  else:
    p_f = p_b = (0.0, 0.0, 0.0, 0.0)
    v_f = v_b = (
        0.5 * g_mean[0],
        0.5 * g_mean[1],
        0.5 * g_mean[2],
        0.5 * g_mean[3],
    )
  scatter_pv(acc, k_f, bins_x, w00, fv, p_f, v_f)
  scatter_pv(acc, k_b, bins_x, w00, fv, p_b, v_b)


@numba.njit(**HELPER)
def scatter_piece(acc, bins_x, bins_y, points, k, g_mean):
  """``_scatter`` of piece k of points [5, 4] (u, v, d, s)."""
  vbar = 0.5 * (points[k, V] + points[k + 1, V])
  _scatter(acc, bins_x, bins_y, points[k, U], points[k + 1, U], vbar, g_mean)


@numba.njit(**HELPER)
def _g_mean(optics, g_e, g_lt, l, ls, ld):
  """g_mean (4 floats) = l A + ls B + ld C (the module docstring) from
  (sums of) l, l s and l d."""
  shading, ka, kd, ks = optics
  if shading:
    half = 0.5 * (g_e[0] + g_e[1] + g_e[2])
    a = 0.5 * ka
    b = 0.5 * kd
    return (
        l * (-g_lt + half) + ls * (ks * half),
        l * (a * g_e[0]) + ld * (b * g_e[0]),
        l * (a * g_e[1]) + ld * (b * g_e[1]),
        l * (a * g_e[2]) + ld * (b * g_e[2]),
    )
  return (-g_lt * l, g_e[0] * l, g_e[1] * l, g_e[2] * l)


@numba.njit(**HELPER)
def none_pending():
  """A ray's pending state with no pending bin: (bin, the 6 sums of
  ``NUM_PENDING``), bin < 0."""
  return (np.int64(-1), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@numba.njit(**HELPER)
def flush(acc, bins_x, optics, g_e, g_lt, pend):
  """Adds a ray's pending sums pend (bin: flat, lower gradient row, < 0:
  none; then the ``NUM_PENDING`` sums) into acc [bins, 8]'s V columns,
  with the ray's cotangents g_e [3], g_lt; returns ``none_pending()``.
  The state is a tuple (registers), not an array: no load and store per
  piece."""
  here, p0, p1, p2, p3, p4, p5 = pend
  if here >= 0:
    for row in range(2):  # (LLVM unrolls it and folds the selects.)
      l, ls, ld = (p0, p1, p2) if row == 0 else (p3, p4, p5)
      g = _g_mean(optics, g_e, g_lt, l, ls, ld)
      kk = here + row * bins_x
      acc[kk, 4] += g[0]
      acc[kk, 5] += g[1]
      acc[kk, 6] += g[2]
      acc[kk, 7] += g[3]
  return none_pending()


@numba.njit(**HELPER)
def _clear_piece(
    acc, bins_x, bins_y, u_f, v_f, u_b, v_b, l, s, d, optics, g_e, g_lt, pend
):
  """One transparent piece of a ray from (u_f, v_f) to (u_b, v_b), of
  length l > 0 and shading terms s, d at its middle: into the ray's
  pending state pend (returned; ``flush``ed first where the piece lands
  in another bin) where it stays in one column, else into acc."""
  i_f = min(max(int(u_f), 0), bins_x - 1)
  i_b = min(max(int(u_b), 0), bins_x - 1)
  vbar = 0.5 * (v_f + v_b)
  if i_f != i_b:
    g_mean = _g_mean(optics, g_e, g_lt, l, l * s, l * d)
    _scatter(acc, bins_x, bins_y, u_f, u_b, vbar, g_mean)
    return pend
  j = min(max(int(vbar), 0), bins_y - 2)
  fv = vbar - j
  here = np.int64(j * bins_x + i_f)
  if here != pend[0]:
    pend = flush(acc, bins_x, optics, g_e, g_lt, pend)
  _, p0, p1, p2, p3, p4, p5 = pend
  w0 = l * (1.0 - fv)
  w1 = l * fv
  if optics[0]:
    return (
        here,
        p0 + w0,
        p1 + w0 * s,
        p2 + w0 * d,
        p3 + w1,
        p4 + w1 * s,
        p5 + w1 * d,
    )
  # Unshaded, the s and d sums stay 0.
  return (here, p0 + w0, p1, p2, p3 + w1, p4, p5)


@numba.njit(**HELPER)
def clear_adjoint(
    acc, bins_x, bins_y, points, lengths, optics, g_e, g_lt, pend
):
  """The cotangent of a transparent segment's pieces (points [5, 4], lengths
  [4]) of a ray, with its g_e [3] and g_lt: into its pending state pend
  (returned) where a piece stays in one column, else into acc [bins,
  8]."""
  shading = optics[0]
  for k in range(NUM_PIECES - 1, -1, -1):
    l = lengths[k]
    if l == 0.0:
      continue
    s = 0.0
    d = 0.0
    if shading:  # The piece's middle: w = 1/2.
      s = points[k, S] + 0.5 * (points[k + 1, S] - points[k, S])
      d = points[k, D] + 0.5 * (points[k + 1, D] - points[k, D])
    pend = _clear_piece(
        acc,
        bins_x,
        bins_y,
        points[k, U],
        points[k, V],
        points[k + 1, U],
        points[k + 1, V],
        l,
        s,
        d,
        optics,
        g_e,
        g_lt,
        pend,
    )
  return pend


@numba.njit(**HELPER)
def unsplit(ends, half):
  """Whether neither half of a segment (ends [3, 5]: f, m, b; u, v, du, d,
  s) brackets an extremum: native_segment_plan.split leaves both whole
  (taus 1), and ``clear_unsplit`` gives clear_adjoint's sums without it."""
  for k in range(2):
    s_a = ends[k, 2] * half
    s_c = ends[k + 1, 2] * half
    if (s_a > 0.0 and s_c < 0.0) or (s_a < 0.0 and s_c > 0.0):
      return False
  return True


@numba.njit(**HELPER)
def one_bin(ends, half, bins_x, bins_y):
  """Whether every piece split could make of a segment (ends [3, 5]; half:
  its halves' length) reads one column and one gradient row pair: the
  columns within the cubic Hermite's reach of each half's chord
  (``native_segment_plan.surely_transparent``'s bound, 4/27 (|s_a - du| +
  |s_c - du|)) and the rows of the ends' v (the pieces' mean v lie
  between them), with 1e-6 bins to spare for rounding. Unshaded, such a
  transparent half adds the same sums split or not (l (1 - fv) and l fv
  summed over its pieces are h (1 - fv) and h fv at the half's own mean v:
  v is linear along it), so ``clear_unsplit`` gives them, up to rounding,
  without the split."""
  lo = float(bins_x)
  hi = 0.0
  for k in range(2):
    u_a, u_c = ends[k, 0], ends[k + 1, 0]
    du = u_c - u_a
    reach = (
        4.0
        / 27.0
        * (abs(ends[k, 2] * half - du) + abs(ends[k + 1, 2] * half - du))
    )
    lo = min(lo, min(u_a, u_c) - reach)
    hi = max(hi, max(u_a, u_c) + reach)
  if _column(lo - 1e-6, bins_x) != _column(hi + 1e-6, bins_x):
    return False
  v_lo = min(ends[0, 1], min(ends[1, 1], ends[2, 1])) - 1e-6
  v_hi = max(ends[0, 1], max(ends[1, 1], ends[2, 1])) + 1e-6
  return _row(v_lo, bins_y) == _row(v_hi, bins_y)


@numba.njit(**HELPER)
def clear_unsplit(acc, bins_x, bins_y, ends, half, optics, g_e, g_lt, pend):
  """clear_adjoint of a transparent segment that split leaves whole
  (``unsplit``; half: its halves' length), from its ends [3, 5] directly:
  pieces 2 and 0, each a half from end a to split's point at tau = 1,
  (clip(u_c, 0, bins_x), x_a + (x_c - x_a)) for x = v, d, s (pieces 1
  and 3 are empty). Returns the pending state."""
  if half == 0.0:
    return pend  # An empty segment: every piece of length 0.
  for k in range(1, -1, -1):
    u_a, v_a = ends[k, 0], ends[k, 1]
    u_c = min(max(ends[k + 1, 0], 0.0), float(bins_x))
    v_c = v_a + (ends[k + 1, 1] - v_a)
    s = 0.0
    d = 0.0
    if optics[0]:  # As clear_adjoint's middle of the piece.
      d_a, s_a = ends[k, 3], ends[k, 4]
      d_c = d_a + (ends[k + 1, 3] - d_a)
      s_c = s_a + (ends[k + 1, 4] - s_a)
      s = s_a + 0.5 * (s_c - s_a)
      d = d_a + 0.5 * (d_c - d_a)
    pend = _clear_piece(
        acc,
        bins_x,
        bins_y,
        u_a,
        v_a,
        u_c,
        v_c,
        half,
        s,
        d,
        optics,
        g_e,
        g_lt,
        pend,
    )
  return pend
