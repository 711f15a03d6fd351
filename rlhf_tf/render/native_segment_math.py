"""One pre-integrated piece of a segment in native code: its optics and
their adjoint.

Scalar numba versions of ``preintegration.segment_from_rows`` for the
native pre-integrated march (``cached_native_segments``; how a segment is
split into four pieces and composited: ``native_segment_plan``), and the
hand-written reverse pass of the same formulas, w.r.t. the (P, V) table
[bins_y * bins_x, 8] (``preintegration.segment_table``, flat bins; a lookup
reads bins idx and idx + bins_x, the two gradient rows of
``preintegration.row_pairs``).

Per piece from end f to end b (length l):

  vbar = (v_f + v_b) / 2, idx / fu / fv = lookup_index(u, vbar)
  PV   = T[idx] + fv (T[idx + bins_x] - T[idx]),  p = PV[:4], V = PV[4:]
  G    = p + fu V
  mean = (G_b - G_f) / du  if |du| > TINY_DU else (V_f + V_b) / 2
  tau  = l mean_0,  lt = -tau,  e_c = l phi(tau) mean_{c+1}
  shading: w = shading_weight(mean_0, V_f0, V_b0), d = d_f + w (d_b - d_f),
           s likewise, a = -expm1(lt),
           e'_c = min(e_c (ka + kd d) + ks s a, a)

min / max / clip ties split the cotangent in halves, as JAX's do
(lax.min's rule).

A piece of optical depth |tau| < _SERIES_Z takes a = tau phi(tau) from
phi's series (no expm1; relative error < tau^5 / 720 < 2e-13, as phi's).

A piece whose mean extinction is exactly 0 is transparent (e = 0, lt = 0:
sigma >= 0 and emission sigma rgb vanish together over its span) and its
forward stops before the optics. The forward reads a bin's P_0..3 and
V_0..3 as 4-lane vectors (``native_pv.piece_means``: 8 vector loads in
place of 32 scalar ones, the same results bit for bit).
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render import preintegration
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_pv import piece_means
from rlhf_tf.render.native_pv_scatter import scatter_pv

TINY_DU = preintegration.TINY_DU
_TINY_SIGMA = preintegration._TINY_SIGMA  # pylint: disable=protected-access
_SERIES_Z = preintegration._SERIES_Z  # pylint: disable=protected-access


@numba.njit(**HELPER)
def _share(x, y):
  """d min(x, y) / dx (and d max(x, y) / dx) where the result is x: 1, 1/2
  at a tie (JAX's rule), 0 otherwise; here for 'x is the one taken'."""
  return 0.5 if x == y else 1.0


@numba.njit(**HELPER)
def _index(u, vbar, bins_x, bins_y):
  """preintegration.lookup_index: (flat bin, fu, fv)."""
  # int() truncates; it equals floor wherever the clamp to 0 does not act.
  i = min(max(int(u), 0), bins_x - 1)
  j = min(max(int(vbar), 0), bins_y - 2)
  return j * bins_x + i, u - i, vbar - j


@numba.njit(**HELPER)
def _pv(table, k, bins_x, fv, c):
  """Channel c of the (P, V) row pair k interpolated at fv."""
  a = table[k, c]
  return a + fv * (table[k + bins_x, c] - a)


@numba.njit(**HELPER)
def _phi(z):
  """preintegration.absorption_ratio and its derivative."""
  if abs(z) < _SERIES_Z:
    q4 = 1.0 - z / 5
    q3 = 1.0 - z / 4 * q4
    q2 = 1.0 - z / 3 * q3
    dq3 = -(q4 / 4 - z / 4 / 5)
    dq2 = -(q3 / 3 + z / 3 * dq3)
    return 1.0 - z / 2 * q2, -(q2 / 2 + z / 2 * dq2)
  return _phi_beyond(z, -np.expm1(-z), np.exp(-z))


@numba.njit(**HELPER)
def _phi_beyond(z, a, ex):
  """_phi at |z| >= _SERIES_Z from a = 1 - exp(-z) and ex = exp(-z)."""
  phi = a / z
  return phi, (ex - phi) / z


@numba.njit(**HELPER)
def _weight_value(mean, s_f, s_b):
  """preintegration.shading_weight (the forward's: no partials)."""
  jump = s_b - s_f
  c = (s_b - mean) / jump if abs(jump) > _TINY_SIGMA else 0.5
  c = min(1.0, max(0.0, c))
  shift = (
      jump * c * (1.0 - c) / (2.0 * mean)
      if abs(2.0 * mean) > _TINY_SIGMA
      else 0.0
  )
  return min(1.0, max(0.0, 0.5 + shift))


@numba.njit(**HELPER)
def _weight(mean, s_f, s_b):
  """preintegration.shading_weight and its partials (d/dmean, d/ds_f,
  d/ds_b)."""
  jump = s_b - s_f
  ok_j = abs(jump) > _TINY_SIGMA
  c = (s_b - mean) / jump if ok_j else 0.5
  c1 = max(0.0, c)
  g_c1 = _share(c, 0.0) if c >= 0.0 else 0.0
  c2 = min(1.0, c1)
  g_c2 = _share(c1, 1.0) if c1 <= 1.0 else 0.0
  ok_m = abs(2.0 * mean) > _TINY_SIGMA
  shift = jump * c2 * (1.0 - c2) / (2.0 * mean) if ok_m else 0.0
  w0 = 0.5 + shift
  w1 = max(0.0, w0)
  g_w1 = _share(w0, 0.0) if w0 >= 0.0 else 0.0
  w = min(1.0, w1)
  g_w = _share(w1, 1.0) if w1 <= 1.0 else 0.0
  # Back from w to (mean, jump, c): dw/dshift = g_w * g_w1.
  g_shift = g_w * g_w1
  g_mean = 0.0
  g_jump = 0.0
  if ok_m:
    # The partials by reciprocals (one division each; the values above
    # divide as the forward's _weight_value, whose ties they must meet).
    inv_2m = 1.0 / (2.0 * mean)
    g_jump += g_shift * c2 * (1.0 - c2) * inv_2m
    g_c = g_shift * jump * (1.0 - 2.0 * c2) * inv_2m * g_c2 * g_c1
    g_mean -= g_shift * shift * (2.0 * inv_2m)
    if ok_j:
      g_c_j = g_c * (1.0 / jump)
      g_mean -= g_c_j
      g_jump -= g_c_j * c
      # c = (s_b - mean) / jump: d/ds_b through the numerator.
      return w, g_mean, -g_jump, g_jump + g_c_j
  return w, g_mean, -g_jump, g_jump


@numba.njit(**HELPER)
def _lit_channel(g, mean_c, scale, lit, s, a, kd, ks):
  """The reverse of one channel of the shaded e'_c = min(e_c lit + ks s a,
  a), e_c = scale mean_c, from its cotangent g: d / d mean_c, the shares
  of d / d scale, d / d d and d / d s, and those of d / d a (the min's,
  then the specular term's)."""
  e = scale * mean_c
  val = e * lit + ks * s * a
  g_val = g * _share(val, a) if val <= a else 0.0
  g_min = g - g_val if val >= a else 0.0
  return (
      g_val * lit * scale,
      g_val * lit * mean_c,
      kd * g_val * e,
      ks * a * g_val,
      g_min,
      ks * s * g_val,
  )


@numba.njit(**HELPER)
def piece_lookup(table, bins_x, bins_y, points, k):
  """(mean_0, mean_1, mean_2, mean_3, V_0 at f, V_0 at b), float64, of
  piece k from points[k] to points[k + 1] ([5, 4]: u, v, d, s): the
  table reads of piece_forward (native_pv.piece_means)."""
  u_f, v_f = points[k, 0], points[k, 1]
  u_b, v_b = points[k + 1, 0], points[k + 1, 1]
  vbar = 0.5 * (v_f + v_b)
  k_f, fu_f, fv = _index(u_f, vbar, bins_x, bins_y)
  k_b, fu_b, _ = _index(u_b, vbar, bins_x, bins_y)
  du = u_b - u_f
  # All four channels' means in 4-lane vectors (native_pv): 8 vector loads.
  return piece_means(
      table, k_f, k_b, bins_x, fv, fu_f, fu_b, du, abs(du) > TINY_DU
  )


@numba.njit(**HELPER)
def piece_optics(means, points, k, l, shading, ka, kd, ks, e):
  """Fills e[k] ([5, 4]) with piece k's (shaded) premultiplied colour and
  opacity a = 1 - exp(lt) from its piece_lookup means; returns lt. A piece
  of mean extinction 0 returns lt = 0, e[k] = 0."""
  mean0, mean1, mean2, mean3, sig_f, sig_b = means
  if mean0 == 0.0:
    e[k, 0] = e[k, 1] = e[k, 2] = e[k, 3] = 0.0
    return 0.0
  tau = l * mean0
  if abs(tau) < _SERIES_Z:  # a = tau phi(tau): no expm1 (to ~z^5 / 720).
    phi = _phi(tau)[0]
    a = tau * phi
  else:
    a = -np.expm1(-tau)
    phi = a / tau
  e[k, 3] = a
  scale = l * phi
  e[k, 0] = scale * mean1
  e[k, 1] = scale * mean2
  e[k, 2] = scale * mean3
  if shading:
    d_f, s_f = points[k, 2], points[k, 3]
    d_b, s_b = points[k + 1, 2], points[k + 1, 3]
    w = _weight_value(mean0, sig_f, sig_b)
    lit = ka + kd * (d_f + w * (d_b - d_f))
    spec = ks * (s_f + w * (s_b - s_f)) * a
    for c in range(3):
      e[k, c] = min(e[k, c] * lit + spec, a)
  return -tau


@numba.njit(**HELPER)
def piece_forward(table, bins_x, bins_y, points, k, l, shading, ka, kd, ks, e):
  """Fills e[k] ([5, 4]) with piece k's (shaded) premultiplied colour and
  opacity a = 1 - exp(lt); returns lt (piece_optics of piece_lookup). The
  piece runs from points[k] to points[k + 1] ([5, 4]: u, v, d, s; rows,
  not views: a view would cost a reference count per piece)."""
  means = piece_lookup(table, bins_x, bins_y, points, k)
  return piece_optics(means, points, k, l, shading, ka, kd, ks, e)


@numba.njit(**HELPER)
def piece_adjoint(
    bins_x,
    bins_y,
    points,
    k,
    l,
    shading,
    ka,
    kd,
    ks,
    kept,
    a,
    g_e,
    g_lt,
    acc,
):
  """Adds the piece's cotangent into acc [bins, 8] from those of its output
  e' (g_e [3]) and lt (g_lt): the reverse of piece_forward's formulas (all
  of them: a transparent piece still passes a cotangent to its extinction).
  The piece runs from points[k] to points[k + 1] ([5, 4]: u, v, d, s);
  kept[k] ([4, 6]) holds its piece_lookup means as the forward read them
  and a its opacity (e[k, 3]: no table read, no transcendental here); g_e
  [3] is T_k g_e."""
  u_f, v_f, d_f, s_f = points[k, 0], points[k, 1], points[k, 2], points[k, 3]
  u_b, v_b = points[k + 1, 0], points[k + 1, 1]
  d_b, s_b = points[k + 1, 2], points[k + 1, 3]
  vbar = 0.5 * (v_f + v_b)
  k_f, fu_f, fv = _index(u_f, vbar, bins_x, bins_y)
  k_b, fu_b, _ = _index(u_b, vbar, bins_x, bins_y)
  du = u_b - u_f
  ok = abs(du) > TINY_DU
  mean0, mean1, mean2, mean3 = kept[k, 0], kept[k, 1], kept[k, 2], kept[k, 3]
  sig_f, sig_b = kept[k, 4], kept[k, 5]
  tau = l * mean0
  # exp(-tau) = 1 - a (a = -expm1(-tau), as the forward's: to an ulp of 1,
  # as exp's own rounding), for phi, its derivative and shading.
  ex = 1.0 - a  # da / dtau.
  phi, d_phi = _phi(tau) if abs(tau) < _SERIES_Z else _phi_beyond(tau, a, ex)
  scale = l * phi
  # d / d mean_0..3 as scalars (registers, not a scratch array).
  g_m0 = g_m1 = g_m2 = g_m3 = 0.0
  g_sig_f = 0.0
  g_sig_b = 0.0
  g_tau = -g_lt
  g_scale = 0.0
  if shading:
    w, w_mean, w_f, w_b = _weight(mean0, sig_f, sig_b)
    d = d_f + w * (d_b - d_f)
    s = s_f + w * (s_b - s_f)
    lit = ka + kd * d
    g_a = 0.0
    g_d = 0.0
    g_s = 0.0
    for c in range(3):  # (LLVM unrolls it and folds the ifs.)
      g_m, g_sc, g_dc, g_sc2, g_a1, g_a2 = _lit_channel(
          g_e[c], kept[k, 1 + c], scale, lit, s, a, kd, ks
      )
      if c == 0:
        g_m1 = g_m
      elif c == 1:
        g_m2 = g_m
      else:
        g_m3 = g_m
      g_a += g_a1
      g_scale += g_sc
      g_d += g_dc
      g_s += g_sc2
      g_a += g_a2
    g_tau += g_a * ex
    g_w = g_d * (d_b - d_f) + g_s * (s_b - s_f)
    g_m0 += g_w * w_mean
    g_sig_f += g_w * w_f
    g_sig_b += g_w * w_b
  else:
    g_m1 = g_e[0] * scale
    g_m2 = g_e[1] * scale
    g_m3 = g_e[2] * scale
    g_scale += g_e[0] * mean1
    g_scale += g_e[1] * mean2
    g_scale += g_e[2] * mean3
  g_tau += g_scale * l * d_phi
  g_m0 += g_tau * l
  # mean -> (P, V) of both ends -> the two rows of each (native_pv_scatter:
  # 4-lane adds, the front end's first as the scalar loop's).
  g0, g1, g2, g3 = g_m0, g_m1, g_m2, g_m3
  if ok:
    inv_du = 1.0 / du  # (One division, not four.)
    g0, g1, g2, g3 = g0 * inv_du, g1 * inv_du, g2 * inv_du, g3 * inv_du
    p_f, p_b = (-g0, -g1, -g2, -g3), (g0, g1, g2, g3)
    v_f = (-g0 * fu_f + g_sig_f, -g1 * fu_f, -g2 * fu_f, -g3 * fu_f)
    v_b = (g0 * fu_b + g_sig_b, g1 * fu_b, g2 * fu_b, g3 * fu_b)
  else:
    p_f = p_b = (0.0, 0.0, 0.0, 0.0)
    g0, g1, g2, g3 = 0.5 * g0, 0.5 * g1, 0.5 * g2, 0.5 * g3
    v_f = (g0 + g_sig_f, g1, g2, g3)
    v_b = (g0 + g_sig_b, g1, g2, g3)
  w00 = 1.0 - fv
  scatter_pv(acc, k_f, bins_x, w00, fv, p_f, v_f)
  scatter_pv(acc, k_b, bins_x, w00, fv, p_b, v_b)
