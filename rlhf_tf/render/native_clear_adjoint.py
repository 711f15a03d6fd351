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
the table's cotangent per piece. Pieces across a column boundary take the
per-piece scatter (``scatter_piece``). The same sums in another order: the
cotangent equals the per-piece one up to rounding (tests/
test_cached_native_segments.py against the XLA march, ~1e-13 in float64).
"""

from __future__ import annotations

import numba

from rlhf_tf.render.native_segment_math import TINY_DU
from rlhf_tf.render.native_segment_plan import D, NUM_PIECES, S, U, V

# Columns of a ray's pending sums: lower row (l w, l w s, l w d), then the
# upper row's, w = 1 - fv and fv.
NUM_PENDING = 6


@numba.njit(inline='always')
def scatter_piece(acc, bins_x, bins_y, points, k, g_mean):
  """Adds a transparent piece's cotangent into acc [bins, 8] from that of
  its mean (P, V) difference quotient, g_mean [4] (piece_adjoint's last
  loop; the shading weight's sigma terms are 0 there). Adds of an exact 0
  are left out: the P columns where the quotient falls back to the mean of
  V (|du| <= TINY_DU: air, u = 0 at both ends) and the upper gradient row
  at fv = 0 (v = 0: no gradient)."""
  u_f, u_b = points[k, U], points[k + 1, U]
  vbar = 0.5 * (points[k, V] + points[k + 1, V])
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
def _g_mean(optics, g_e, g_lt, l, ls, ld, g_mean):
  """Fills g_mean [4] = l A + ls B + ld C (the module docstring) from
  (sums of) l, l s and l d."""
  shading, ka, kd, ks = optics
  if shading:
    half = 0.5 * (g_e[0] + g_e[1] + g_e[2])
    g_mean[0] = l * (-g_lt + half) + ls * (ks * half)
    for c in range(3):
      g_mean[1 + c] = l * (0.5 * ka * g_e[c]) + ld * (0.5 * kd * g_e[c])
  else:
    g_mean[0] = -g_lt * l
    for c in range(3):
      g_mean[1 + c] = g_e[c] * l


@numba.njit(inline='always')
def flush(acc, bins_x, optics, g_e, g_lt, bin_k, pending, m, g_mean):
  """Adds ray m's pending sums (pending [n, 6], ``NUM_PENDING``) of its
  pending bin bin_k [n] (flat, lower gradient row; < 0: none) into acc
  [bins, 8]'s V columns, with the ray's cotangents g_e [3], g_lt, and
  leaves it none; g_mean: [4] scratch."""
  here = bin_k[m]
  if here < 0:
    return
  bin_k[m] = -1
  for row in range(2):
    o = 3 * row
    _g_mean(
        optics,
        g_e,
        g_lt,
        pending[m, o],
        pending[m, o + 1],
        pending[m, o + 2],
        g_mean,
    )
    kk = here + row * bins_x
    for c in range(4):
      acc[kk, 4 + c] += g_mean[c]


@numba.njit(inline='always')
def clear_adjoint(
    acc,
    bins_x,
    bins_y,
    points,
    lengths,
    optics,
    g_e,
    g_lt,
    g_mean,
    bin_k,
    pending,
    m,
):
  """The cotangent of a transparent segment's pieces (points [5, 4], lengths
  [4]) of ray m, with its g_e [3] and g_lt: into its pending sums (pending
  [n, 6], bin bin_k [n]; flushed first when a piece lands in another bin)
  where a piece stays in one column, else into acc [bins, 8]."""
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
    i_f = min(max(int(points[k, U]), 0), bins_x - 1)
    i_b = min(max(int(points[k + 1, U]), 0), bins_x - 1)
    if i_f != i_b:
      _g_mean(optics, g_e, g_lt, l, l * s, l * d, g_mean)
      scatter_piece(acc, bins_x, bins_y, points, k, g_mean)
      continue
    vbar = 0.5 * (points[k, V] + points[k + 1, V])
    j = min(max(int(vbar), 0), bins_y - 2)
    fv = vbar - j
    here = j * bins_x + i_f
    if here != bin_k[m]:
      flush(acc, bins_x, optics, g_e, g_lt, bin_k, pending, m, g_mean)
      bin_k[m] = here
      for c in range(NUM_PENDING):
        pending[m, c] = 0.0
    for row in range(2):
      w = l * (fv if row else 1.0 - fv)
      pending[m, 3 * row] += w
      pending[m, 3 * row + 1] += w * s
      pending[m, 3 * row + 2] += w * d
