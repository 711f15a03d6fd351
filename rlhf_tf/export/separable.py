"""The best separable approximation of a 2D TF, and how far it is off.

3D Slicer, ParaView and VTK's 1D mode give a sample the opacity
s(HU) * g(|grad|): a rank-one table. A polygon on the JH is rank one only when
it is a rectangle; otherwise we write the weighted least-squares rank-one fit

  min_{s >= 0, 0 <= g <= 1}  sum_ij w_ij (A_ij - g_i s_j)^2,

(A = the table's opacity [bins_y, bins_x], w = JH weights, e.g. the
normalised log counts plus a floor so empty bins still count), solved by
alternating least squares (each half-step is a closed-form, clipped
non-negative least squares per row / column), and report its error as the
IoU of the two supports on the JH:

  support(A) = {bins with A >= level},  level = support_fraction * max(A)
  IoU = |S_table & S_sep| / |S_table | S_sep|   (bins; and voxel-weighted
                                                with the JH counts)

``support_fraction`` = 0.5: the polygon's edge is where the soft indicator
reaches half its opacity (sigmoid(0) = 1/2).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from rlhf_tf.export import tables

SUPPORT_FRACTION = 0.5


def support(alpha, level: float) -> np.ndarray:
  """bool mask of the bins whose opacity reaches ``level``."""
  return np.asarray(alpha) >= level


def support_iou(a, b, weights=None) -> float:
  """|a & b| / |a | b| for bool masks (weighted sums with ``weights``);
  1.0 when both are empty."""
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  w = np.ones(a.shape) if weights is None else np.asarray(weights, np.float64)
  union = float((w * (a | b)).sum())
  return float((w * (a & b)).sum()) / union if union > 0 else 1.0


def rank_one_fit(alpha, weights=None, iterations: int = 200):
  """Weighted non-negative rank-one fit alpha[i, j] ~ g[i] * s[j].

  Args:
    alpha: [bins_y, bins_x] opacity in [0, 1].
    weights: [bins_y, bins_x] non-negative weights (None = all 1).
    iterations: alternating least-squares rounds.

  Returns:
    (s [bins_x] in [0, 1], g [bins_y] in [0, 1] with max(g) = 1 unless the
    fit is all zero).
  """
  a = np.asarray(alpha, np.float64)
  w = np.ones_like(a) if weights is None else np.asarray(weights, np.float64)
  s = a.max(axis=0)  # A rectangle spanning every gradient is exact here.
  g = np.ones(a.shape[0])
  tiny = 1e-12
  for _ in range(iterations):
    g = np.clip((w * a) @ s / ((w @ (s * s)) + tiny), 0.0, None)
    top = g.max()
    if top <= 0:
      return np.zeros_like(s), np.zeros_like(g)
    g, s = g / top, s * top
    s_new = np.clip(g @ (w * a) / (g * g @ w + tiny), 0.0, 1.0)
    if np.allclose(s_new, s, atol=1e-9, rtol=0):
      s = s_new
      break
    s = s_new
  return s, g


def simplify_points(x, values, tol: float) -> np.ndarray:
  """Indices of a subset of points whose piecewise-linear interpolation
  reproduces every point within ``tol`` (max abs over value columns;
  Ramer-Douglas-Peucker on the vertical error). Always keeps the ends.

  Args:
    x: [N] increasing abscissae; values: [N] or [N, k].
    tol: allowed error (0 keeps exactly the breakpoints of a piecewise-linear
      input, up to float rounding).
  """
  x = np.asarray(x, np.float64)
  v = np.asarray(values, np.float64).reshape(len(x), -1)
  keep = {0, len(x) - 1}
  stack = [(0, len(x) - 1)]
  while stack:
    a, b = stack.pop()
    if b - a < 2:
      continue
    t = (x[a + 1 : b] - x[a]) / (x[b] - x[a])
    line = v[a] + t[:, None] * (v[b] - v[a])
    err = np.abs(line - v[a + 1 : b]).max(axis=1)
    k = int(np.argmax(err))
    if err[k] > tol + 1e-12:
      mid = a + 1 + k
      keep.add(mid)
      stack += [(a, mid), (mid, b)]
  return np.array(sorted(keep))


def _colour_over_hu(table: tables.TFTable, weights) -> np.ndarray:
  """[bins_x, 3] colour per intensity: the opacity- and JH-weighted mean
  over gradients (exact when the colour depends on HU only)."""
  w = table.rgba[..., 3].astype(np.float64) * weights
  rgb = table.rgba[..., :3].astype(np.float64)
  num = (w[..., None] * rgb).sum(axis=0)
  den = w.sum(axis=0)[:, None]
  plain = rgb.mean(axis=0)
  return np.where(den > 1e-12, num / np.maximum(den, 1e-12), plain)


def separable_tf(
    table: tables.TFTable,
    jh_weights=None,
    jh_counts=None,
    gradient_scale_mm: float = 1.0,
    shading: tables.Shading = tables.Shading(),
    tol: float = 1e-4,
    weight_floor: float = 0.05,
    name: Optional[str] = None,
):
  """The best separable approximation of a TFTable and its error.

  Args:
    table: the 2D TF.
    jh_weights: [bins_y, bins_x] fit weights before the floor (e.g. the
      normalised log JH image); None = uniform.
    jh_counts: [bins_y, bins_x] voxel counts for the voxel-weighted IoU
      (None: that entry is omitted).
    gradient_scale_mm: gradient points are |grad| HU/mm times this (the
      mean voxel spacing for VTK-based viewers).
    shading: lighting written with the TF.
    tol: simplification tolerance of the piecewise-linear functions.
    weight_floor: added to the weights so empty bins still count.

  Returns:
    (SeparableTF, report) with report = dict(support_iou, [support_iou_voxels,]
    max_abs_alpha_error, support_level).
  """
  alpha = table.rgba[..., 3].astype(np.float64)
  w = (
      np.ones_like(alpha)
      if jh_weights is None
      else np.asarray(jh_weights, np.float64)
  ) + weight_floor
  s, g = rank_one_fit(alpha, w)
  hu = tables.bin_centres_hu(table.axes, table.bins_x)
  grad = tables.bin_centres_grad(table.axes, table.bins_y) * gradient_scale_mm
  colour = _colour_over_hu(table, w)
  k_s = simplify_points(hu, s, tol)
  k_g = simplify_points(grad, g, tol)
  k_c = simplify_points(hu, colour, tol)
  sep = tables.SeparableTF(
      scalar_opacity=np.stack([hu[k_s], s[k_s]], -1),
      gradient_opacity=np.stack([grad[k_g], g[k_g]], -1),
      color=np.concatenate([hu[k_c, None], colour[k_c]], -1),
      unit_distance_mm=table.unit_distance_mm,
      gradient_scale_mm=gradient_scale_mm,
      shading=shading,
      name=name or table.name,
  )
  return sep, separable_report(table, sep, jh_counts)


def separable_report(
    table: tables.TFTable, sep: tables.SeparableTF, jh_counts=None
) -> dict:
  """IoU of the supports of a table and a separable TF on the table's grid."""
  alpha = table.rgba[..., 3].astype(np.float64)
  approx = (
      sep.table(table.axes, table.bins_x, table.unit_distance_mm)
      .rgba[..., 3]
      .astype(np.float64)
  )
  if table.bins_x != table.bins_y:
    raise ValueError('separable_report needs a square table (the JH grid)')
  level = SUPPORT_FRACTION * float(alpha.max())
  a, b = support(alpha, level), support(approx, level)
  report = dict(
      support_iou=support_iou(a, b),
      support_level=level,
      max_abs_alpha_error=float(np.abs(alpha - approx).max()),
  )
  if jh_counts is not None:
    report['support_iou_voxels'] = support_iou(a, b, jh_counts)
  return report
