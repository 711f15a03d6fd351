"""One pre-integrated segment in native code: where it is split, whether it
is transparent, and its four pieces composited (the adjoint's walk:
``native_segment_adjoint``).

Scalar numba versions of ``preintegration.segment_plan`` for the native
pre-integrated march (``cached_native_segments``): a segment is two halves,
front f -> sampled midpoint m -> back b (length h = l_i / 2 each); each
half a -> c is split at the point ``preintegration.split_at_extremum``
gives,

  tau, u* = extremum(u_a, u_c, du_a h, du_c h)   (``extremum``; a crest
            bracketed by the ends' slopes, else tau = 1, u* = u_c)
  p       = (clip(u*, 0, bins_x), v_a + tau (v_c - v_a), d, s likewise)

into pieces of lengths tau h and (1 - tau) h: five points f, p_1, m, p_2,
b and four pieces, each classified by ``native_segment_math.piece_forward``
(``preintegration.segment_from_rows``) and composited front to back,

  e = sum_k T_k e_k,  T_k = prod_{j<k} exp(lt_j),  lt = sum_k lt_k.

Reverse (``native_segment_adjoint.segment_adjoint``; w.r.t. the (P, V)
table only: the split depends on the cached
samples, not on the TF): from the segment's cotangents g_e [3] and g_lt,
piece k gets g_e_k = T_k g_e and g_lt_k = g_lt + sum_{j>k} T_j g_e . e_j.
A piece of length 0 (tau clipped to 0 or 1, an empty segment) adds
exactly nothing either way and is not classified.
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_segment_math import piece_lookup, piece_optics

# Columns of a point in ``points``.
U, V, D, S = 0, 1, 2, 3
NUM_POINTS = 5
NUM_PIECES = 4


@numba.njit(**HELPER)
def _sign(x):
  return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)


@numba.njit(**HELPER)
def extremum(u_a, u_b, s_a, s_b, min_den):
  """preintegration.extremum, scalar: (tau in [0, 1], u there). min_den:
  safe_math.safe_div's default threshold, eps(dtype)^2."""
  if _sign(s_a) * _sign(s_b) >= 0.0:
    return 1.0, u_b  # Not split: the second piece is empty.
  du = u_b - u_a
  c1 = s_a
  c2 = 3.0 * du - 2.0 * s_a - s_b
  c3 = s_a + s_b - 2.0 * du
  a = 3.0 * c3
  b = 2.0 * c2
  c = c1
  root = np.sqrt(max(b * b - 4.0 * a * c, 0.0))
  q = -0.5 * (b + (-root if b < 0.0 else root))
  if q == 0.0:
    q = 1.0
  q_over_a = q / a if abs(a) > min_den else 2.0
  if b >= 0.0:
    r_minus, r_plus = q_over_a, c / q
  else:
    r_minus, r_plus = c / q, q_over_a
  tau = min(max(r_minus if s_a > 0.0 else r_plus, 0.0), 1.0)
  return tau, u_a + tau * (c1 + tau * (c2 + tau * c3))


@numba.njit(**HELPER)
def split(ends, half, bins_x, min_den, points, lengths, taus):
  """Fills the u, v columns of points [5, 4] (f, p_1, m, p_2, b), lengths
  [4] and taus [2] from ends [3, 5] (f, m, b: u, v, du, d, s)."""
  for k in range(2):
    a, c = k, k + 1
    tau, peak = extremum(
        ends[a, 0],
        ends[c, 0],
        ends[a, 2] * half,
        ends[c, 2] * half,
        min_den,
    )
    taus[k] = tau
    points[2 * k, U] = ends[a, 0]
    points[2 * k, V] = ends[a, 1]
    points[2 * k + 1, U] = min(max(peak, 0.0), float(bins_x))
    points[2 * k + 1, V] = ends[a, 1] + tau * (ends[c, 1] - ends[a, 1])
    lengths[2 * k] = tau * half
    lengths[2 * k + 1] = (1.0 - tau) * half
  points[4, U] = ends[2, 0]
  points[4, V] = ends[2, 1]


@numba.njit(**HELPER)
def split_shading(ends, taus, points):
  """Fills the d, s columns of points [5, 4] (``split``'s taus [2])."""
  for k in range(2):
    a, c = k, k + 1
    for col in (D, S):
      x_a = ends[a, col + 1]
      points[2 * k, col] = x_a
      points[2 * k + 1, col] = x_a + taus[k] * (ends[c, col + 1] - x_a)
  points[4, D] = ends[2, 3]
  points[4, S] = ends[2, 4]


@numba.njit(nogil=True)
def occupancy(table, bins_x):
  """[bins_y + 1, bins_x + 1] int32 summed-area table of the bins whose
  extinction V_0 is not 0 (count in rows < j, columns < i at [j, i])."""
  bins_y = table.shape[0] // bins_x
  out = np.zeros((bins_y + 1, bins_x + 1), np.int32)
  for j in range(bins_y):
    run = 0
    for i in range(bins_x):
      run += table[j * bins_x + i, 4] != 0.0
      out[j + 1, i + 1] = out[j, i + 1] + run
  return out


@numba.njit(**HELPER)
def _column(u, bins_x):
  return min(max(int(u), 0), bins_x - 1)


@numba.njit(**HELPER)
def _row(v, bins_y):
  return min(max(int(v), 0), bins_y - 2)


@numba.njit(**HELPER)
def surely_transparent(occ, bins_x, bins_y, ends, half):
  """A cheaper, conservative ``transparent`` before ``split``: whether no
  bin in a box around all the pieces could read has V_0 != 0. The cubic
  Hermite stays within 4/27 (|s_a - du| + |s_c - du|) of the chord
  (|t (1 - t)^2|, |t^2 (1 - t)| <= 4/27), so a peak's column lies within
  that of its half's ends' (one more column, and one more gradient row on
  each side, for rounding)."""
  c0 = bins_x
  c1 = 0
  for k in range(2):
    u_a, u_c = ends[k, 0], ends[k + 1, 0]
    du = u_c - u_a
    s_a, s_c = ends[k, 2] * half, ends[k + 1, 2] * half
    reach = 4.0 / 27.0 * (abs(s_a - du) + abs(s_c - du))
    c0 = min(c0, _column(min(u_a, u_c) - reach - 1.0, bins_x))
    c1 = max(c1, _column(max(u_a, u_c) + reach + 1.0, bins_x) + 1)
  v_lo = min(ends[0, 1], min(ends[1, 1], ends[2, 1]))
  v_hi = max(ends[0, 1], max(ends[1, 1], ends[2, 1]))
  r0 = _row(v_lo - 1.0, bins_y)
  r1 = _row(v_hi + 1.0, bins_y) + 2
  return occ[r1, c1] - occ[r0, c1] - occ[r1, c0] + occ[r0, c0] == 0


@numba.njit(**HELPER)
def transparent(occ, bins_x, bins_y, points, lengths):
  """Whether every bin the pieces of non-zero length read (columns between
  the five points', the two gradient rows at each piece's mean v:
  lookup_index) has V_0 = 0, from 4 loads of occ (``occupancy``): then P_0
  is the same at all of them and each piece's mean extinction is exactly 0
  (piece_forward: transparent). The marches do not call it (it catches
  ~1 % of the segments ``surely_transparent`` lets through, for more than
  it saves: ``direct_segment_kernels``); kept as the statement of which
  bins a split segment reads (tests/test_native_block_boxes.py)."""
  c0 = bins_x
  c1 = 0
  for k in range(NUM_POINTS):
    i = min(max(int(points[k, U]), 0), bins_x - 1)
    c0 = min(c0, i)
    c1 = max(c1, i + 1)
  r0 = bins_y
  r1 = 0
  for k in range(NUM_PIECES):
    if lengths[k] == 0.0:
      continue  # Not classified (segment_forward).
    vbar = 0.5 * (points[k, V] + points[k + 1, V])
    j = min(max(int(vbar), 0), bins_y - 2)
    r0 = min(r0, j)
    r1 = max(r1, j + 2)
  if r1 == 0:
    return True  # An empty segment.
  return occ[r1, c1] - occ[r0, c1] - occ[r1, c0] + occ[r0, c0] == 0


@numba.njit(**HELPER)
def _lookup(table, bins_x, bins_y, points, lengths, k):
  """piece_lookup of piece k, or zeros for an empty one (not classified)."""
  if lengths[k] == 0.0:
    return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
  return piece_lookup(table, bins_x, bins_y, points, k)


@numba.njit(**HELPER)
def segment_forward(table, bins_x, bins_y, points, lengths, optics, e):
  """Fills e [5, 4] (rows k < 4: piece k's shaded premultiplied colour and
  opacity; row 4: the segment's, a = 1 - prod_k (1 - a_k)); returns the
  segment's lt. optics: (shading, ka, kd, ks). Every piece's table lookup
  first, then their optics: the four pieces' loads and divisions overlap
  (~5 % of the native cached march, the same results bit for bit)."""
  shading, ka, kd, ks = optics
  means = (
      _lookup(table, bins_x, bins_y, points, lengths, 0),
      _lookup(table, bins_x, bins_y, points, lengths, 1),
      _lookup(table, bins_x, bins_y, points, lengths, 2),
      _lookup(table, bins_x, bins_y, points, lengths, 3),
  )
  lt = 0.0
  e[4, 0] = e[4, 1] = e[4, 2] = 0.0
  trans = 1.0
  for k in range(NUM_PIECES):
    if lengths[k] == 0.0:
      e[k, 0] = e[k, 1] = e[k, 2] = e[k, 3] = 0.0
      continue
    lt += piece_optics(means[k], points, k, lengths[k], shading, ka, kd, ks, e)
    for c in range(3):
      e[4, c] += trans * e[k, c]
    trans *= 1.0 - e[k, 3]  # exp(lt_k).
  e[4, 3] = 1.0 - trans
  return lt
