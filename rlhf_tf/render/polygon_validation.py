"""Checks on user-supplied polygon actions (paper eq. 2), in numpy.

User input (preference UI, presets, files, TF tables) is checked once here,
not jitted, with one clear message naming the polygon: ``validate_polygon`` /
``is_simple`` for single actions in the JH [0, 1]^2, ``polygon_batch_problem``
for batches of TF polygons (which may leave the JH). The differentiable
polygon math the learner uses is in ``rlhf_tf.render.polygon``.
"""

from __future__ import annotations

import itertools
from typing import Optional

import numpy as np

from rlhf_tf.input_error import InputError


class PolygonError(InputError):
  """A user-supplied polygon is not a valid action; names the polygon."""


_EPS = 1e-12  # Orientation tolerance for JH-scale (unit) coordinates.
_FAR = 1e3  # TF polygons may leave [0, 1]^2, but not absurdly far.


def _orient(p, q, r) -> float:
  """Twice the signed area of triangle (p, q, r)."""
  return float((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))


def _on_segment(p, q, r) -> bool:
  """r collinear with [p, q] lies within its bounding box."""
  return (
      min(p[0], q[0]) - _EPS <= r[0] <= max(p[0], q[0]) + _EPS
      and min(p[1], q[1]) - _EPS <= r[1] <= max(p[1], q[1]) + _EPS
  )


def _segments_intersect(p1, p2, p3, p4) -> bool:
  """Closed segments [p1, p2] and [p3, p4] share at least one point."""
  d1, d2 = _orient(p3, p4, p1), _orient(p3, p4, p2)
  d3, d4 = _orient(p1, p2, p3), _orient(p1, p2, p4)
  if ((d1 > _EPS and d2 < -_EPS) or (d1 < -_EPS and d2 > _EPS)) and (
      (d3 > _EPS and d4 < -_EPS) or (d3 < -_EPS and d4 > _EPS)
  ):
    return True
  return (
      (abs(d1) <= _EPS and _on_segment(p3, p4, p1))
      or (abs(d2) <= _EPS and _on_segment(p3, p4, p2))
      or (abs(d3) <= _EPS and _on_segment(p1, p2, p3))
      or (abs(d4) <= _EPS and _on_segment(p1, p2, p4))
  )


def _fmt(v) -> str:
  return f'({v[0]:.6g}, {v[1]:.6g})'


def _simplicity_error(v: np.ndarray) -> Optional[str]:
  """Why the closed polygon v [n, 2] is not simple, or None if it is."""
  n = len(v)
  for i, j in itertools.combinations(range(n), 2):
    if np.linalg.norm(v[i] - v[j]) <= _EPS:
      return f'vertices {i} and {j} coincide at {_fmt(v[i])}'
  for i in range(n):
    # Adjacent edges share vertex i + 1; they overlap iff they are collinear
    # and the boundary turns back on itself there.
    a, b, c = v[i], v[(i + 1) % n], v[(i + 2) % n]
    if abs(_orient(a, b, c)) <= _EPS and np.dot(b - a, c - b) < 0:
      return (
          f'edges {i}-{(i + 1) % n} and {(i + 1) % n}-{(i + 2) % n} '
          f'overlap (the boundary folds back at vertex {(i + 1) % n})'
      )
  for i, j in itertools.combinations(range(n), 2):
    if j == i + 1 or (i == 0 and j == n - 1):
      continue  # Adjacent edges, handled above.
    if _segments_intersect(v[i], v[(i + 1) % n], v[j], v[(j + 1) % n]):
      return f'edges {i}-{(i + 1) % n} and {j}-{(j + 1) % n} intersect'
  return None


def is_simple(vertices) -> bool:
  """Whether the closed polygon [n, 2] (n >= 3) is simple (numpy).

  Simple: no repeated vertices, no two non-adjacent edges touching, no
  adjacent edges folding back onto each other.
  """
  v = np.asarray(vertices, np.float64)
  if v.ndim != 2 or v.shape[1] != 2 or v.shape[0] < 3:
    return False
  return _simplicity_error(v) is None


def _orient_np(p, q, r):
  """Twice the signed area of triangles (p, q, r); [..., 2] -> [...]."""
  return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (
      q[..., 1] - p[..., 1]
  ) * (r[..., 0] - p[..., 0])


def polygon_batch_problem(vertices: np.ndarray) -> Optional[tuple]:
  """The first polygon of a batch that is not a usable TF polygon (numpy).

  Vectorised over the batch (cheap for 10^4 polygons), unlike
  ``validate_polygon``, and without its [0, 1]^2 and area-threshold rules:
  a TF polygon may extend beyond the JH. Refused: fewer than 3 vertices,
  non-finite vertices, all vertices collinear (zero area) and edges that
  cross (bow-ties): none has a well-defined inside. A repeated vertex (a
  zero-length edge, e.g. a triangle padded to n = 4 to batch it with
  quads) and a vertex touching an edge are allowed: the signed distance and
  the even-odd inside test handle both.

  Args:
    vertices: [..., n, 2] float array.

  Returns:
    None when all are fine, else (batch index tuple, reason).
  """
  v = np.asarray(vertices, np.float64)
  if v.ndim < 2 or v.shape[-1] != 2 or v.shape[-2] < 3:
    return (), (
        f'vertices must be [..., n >= 3, 2], got shape ' f'{tuple(v.shape)}'
    )
  batch = v.shape[:-2]
  flat = v.reshape((-1,) + v.shape[-2:])
  n = flat.shape[1]
  bad = np.zeros(len(flat), bool)
  reasons = np.full(len(flat), '', dtype=object)

  def mark(mask, reason):
    new = mask & ~bad
    reasons[new] = reason
    bad[:] |= mask

  mark(~np.all(np.isfinite(flat), axis=(1, 2)), 'a vertex is not finite')
  finite = np.where(np.isfinite(flat), flat, 0.0)
  # Far beyond the JH a float32 table loses all precision (or overflows).
  mark(
      np.max(np.abs(finite), axis=(1, 2)) > _FAR,
      f'a vertex lies more ' f'than {_FAR:g} JH units from the JH [0, 1]^2',
  )
  safe = np.where(np.abs(finite) <= _FAR, finite, 0.0)
  scale = np.maximum(np.max(np.abs(safe), axis=(1, 2)), 1.0)
  eps = _EPS * scale * scale  # orientation tolerance, area units
  centred = safe - safe.mean(axis=1, keepdims=True)
  cross = (
      centred[:, :, None, 0] * centred[:, None, :, 1]
      - centred[:, :, None, 1] * centred[:, None, :, 0]
  )
  mark(
      np.max(np.abs(cross), axis=(1, 2)) <= eps,
      'all vertices are collinear (zero area)',
  )
  for i, j in itertools.combinations(range(n), 2):
    if j == i + 1 or (i == 0 and j == n - 1):
      continue  # adjacent edges share a vertex
    p1, p2 = safe[:, i], safe[:, (i + 1) % n]
    p3, p4 = safe[:, j], safe[:, (j + 1) % n]
    d1, d2 = _orient_np(p3, p4, p1), _orient_np(p3, p4, p2)
    d3, d4 = _orient_np(p1, p2, p3), _orient_np(p1, p2, p4)
    proper = (((d1 > eps) & (d2 < -eps)) | ((d1 < -eps) & (d2 > eps))) & (
        ((d3 > eps) & (d4 < -eps)) | ((d3 < -eps) & (d4 > eps))
    )
    mark(
        proper,
        f'edges {i}-{(i + 1) % n} and {j}-{(j + 1) % n} cross '
        f'(a bow-tie, not a simple polygon)',
    )
  if not bad.any():
    return None
  first = int(np.argmax(bad))
  return tuple(int(k) for k in np.unravel_index(first, batch)), str(
      reasons[first]
  )


def as_vertex_array(vertices, name: str = 'polygon') -> np.ndarray:
  """User vertices as a float64 array, refusing non-numbers (numpy).

  Only real numbers are vertices: strings, None, ragged lists, booleans and
  complex numbers (whose imaginary part a cast would drop) are refused.

  Raises:
    PolygonError: starting with ``name``.
  """
  if isinstance(vertices, (str, bytes)):
    raise PolygonError(
        f'{name}: vertices must be a list of [x, y] numbers, '
        f'got the text {vertices!r}'
    )
  try:
    raw = np.asarray(vertices)
  except (ValueError, TypeError) as err:  # ragged nesting
    raise PolygonError(
        f'{name}: vertices must be a list of [x, y] number '
        f'pairs of equal length ({err})'
    ) from None
  if raw.dtype.kind not in 'iuf':
    kinds = {
        'b': 'booleans',
        'c': 'complex numbers',
        'U': 'text',
        'S': 'bytes',
        'O': 'mixed or non-numeric values',
    }
    raise PolygonError(
        f'{name}: vertices must be real numbers, got '
        f'{kinds.get(raw.dtype.kind, raw.dtype.name)}: '
        f'{_short(vertices)}'
    )
  return raw.astype(np.float64)


def _short(value, limit: int = 80) -> str:
  text = repr(value if not isinstance(value, np.ndarray) else value.tolist())
  return text if len(text) <= limit else text[: limit - 3] + '...'


def validate_polygon(
    vertices, min_area: float = 1e-4, name: str = 'polygon'
) -> np.ndarray:
  """Checks a user-supplied action (eq. 2) and returns it as float64.

  Checks, in order: real numbers (no text, booleans, complex, ragged
  lists); shape [n, 2] with n >= 3; finite; inside [0, 1]^2; not all
  collinear; simple (no repeated vertices, no intersecting or overlapping
  edges); |area| >= min_area. The vertex order is kept (call
  ``polygon.canonicalize`` for the canonical order).

  Args:
    vertices: array-like [n, 2] of (x, y) in JH coordinates.
    min_area: smallest accepted |area| (JH units^2; 1e-4 = one 100th squared).
    name: how messages name the polygon (e.g. 'actions.json: polygon 3').

  Returns:
    [n, 2] float64 copy of the vertices.

  Raises:
    PolygonError: starting with ``name``, then the offending vertex index or
      edge pair.
  """
  v = as_vertex_array(vertices, name)
  if v.ndim != 2 or v.shape[-1] != 2:
    raise PolygonError(
        f'{name}: vertices must have shape [n, 2], got ' f'{v.shape}'
    )
  n = v.shape[0]
  if n < 3:
    raise PolygonError(f'{name}: a polygon needs at least 3 vertices, got {n}')
  for i, p in enumerate(v):
    if not np.all(np.isfinite(p)):
      raise PolygonError(f'{name}: vertex {i} {_fmt(p)} is not finite')
  for i, p in enumerate(v):
    if np.any(p < 0.0) or np.any(p > 1.0):
      raise PolygonError(
          f'{name}: vertex {i} {_fmt(p)} lies outside ' f'[0, 1]^2'
      )
  centred = v - v.mean(axis=0)
  if (
      np.max(
          np.abs(
              centred[:, 0:1] * centred[None, :, 1]
              - centred[:, 1:2] * centred[None, :, 0]
          )
      )
      <= _EPS
  ):
    raise PolygonError(
        f'{name}: all vertices are collinear: the polygon has ' f'zero area'
    )
  reason = _simplicity_error(v)
  if reason is not None:
    raise PolygonError(f'{name}: polygon is not simple: {reason}')
  area = abs(
      0.5
      * float(
          np.sum(
              v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1]
          )
      )
  )
  if not area >= min_area:
    raise PolygonError(
        f'{name}: polygon area {area:.3g} is below min_area ' f'{min_area:.3g}'
    )
  return v
