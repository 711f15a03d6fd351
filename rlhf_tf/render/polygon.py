"""Polygon actions in the joint histogram (paper eq. 2).

An action is a polygon ``a = [(x_1, y_1), ..., (x_n, y_n)]`` (eq. 2, n = 4 by
default) in JH coordinates: x = normalised intensity, y = normalised gradient
magnitude, both in [0, 1] (see ``rlhf_tf.render.histogram``). Vertices are
stored as arrays ``[..., n, 2]`` of (x, y) pairs.

Everything the learner touches (``canonicalize``, ``random_actions``,
``polygon_area``, ``signed_distance``) lives here and is pure jax.numpy:
batch-agnostic, jit/vmap friendly and differentiable with finite gradients
everywhere. User input (preference UI, presets, files) is checked once, in
numpy with clear messages, by ``rlhf_tf.render.polygon_validation``.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp

from rlhf_tf.render.safe_math import safe_div, safe_norm


@flax.struct.dataclass
class Polygon:
  """A (batch of) polygon action(s), eq. 2."""

  vertices: jax.Array  # [..., n, 2] (x, y) in JH coordinates [0, 1]^2.

  @property
  def num_vertices(self) -> int:
    return int(self.vertices.shape[-2])

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(self.vertices.shape[:-2])

  def canonical(self) -> 'Polygon':
    return Polygon(vertices=canonicalize(self.vertices))

  def area(self) -> jax.Array:
    return polygon_area(self.vertices)


# ---------------------------------------------------------------------------
# Batch-agnostic polygon math (jax).


@jax.jit
def polygon_area(vertices):
  """Signed shoelace area, positive for counter-clockwise vertices.

  Args:
    vertices: [..., n, 2] (x, y).

  Returns:
    [...] signed area in JH units^2 (the unit square has area 1).
  """
  x, y = vertices[..., 0], vertices[..., 1]
  x_next, y_next = jnp.roll(x, -1, axis=-1), jnp.roll(y, -1, axis=-1)
  return 0.5 * jnp.sum(x * y_next - x_next * y, axis=-1)


@jax.jit
def canonicalize(vertices):
  """Orders vertices counter-clockwise by angle around their centroid.

  The vertex mean c is invariant to the input order, so the result is
  permutation-invariant and idempotent. For points in general position the
  star-shaped ordering around c is a simple polygon: c lies in the convex
  hull, so no angular gap between consecutive vertices exceeds pi and the
  triangles (c, v_i, v_i+1) tile the polygon without overlap. Angles lie in
  (-pi, pi]; the first vertex is the first one counter-clockwise from the -x
  direction. Ties (equal angles, degenerate input) keep the input order.

  Args:
    vertices: [..., n, 2] (x, y).

  Returns:
    [..., n, 2] the same vertices, reordered. Gradients flow to the vertices
    (the permutation itself is piecewise constant).
  """
  centred = vertices - jnp.mean(vertices, axis=-2, keepdims=True)
  # The angle only feeds argsort; stopping its gradient keeps arctan2's 0/0
  # at a vertex lying on the centroid out of any derivative.
  centred = jax.lax.stop_gradient(centred)
  angle = jnp.arctan2(centred[..., 1], centred[..., 0])
  order = jnp.argsort(angle, axis=-1, stable=True)
  return jnp.take_along_axis(vertices, order[..., None], axis=-2)


@functools.partial(jax.jit, static_argnames=('num', 'n_vertices', 'dtype'))
def random_actions(key, num: int, n_vertices: int = 4, dtype=jnp.float32):
  """Uniformly drawn random actions (paper secs. 2 and 4), canonicalised.

  Args:
    key: PRNG key; the same key gives the same actions.
    num: number of actions.
    n_vertices: vertices per polygon (paper: 4).
    dtype: floating dtype.

  Returns:
    [num, n_vertices, 2] vertices in [0, 1]^2, counter-clockwise.
  """
  if n_vertices < 3:
    raise ValueError(f'a polygon needs n_vertices >= 3, got {n_vertices}')
  pts = jax.random.uniform(key, (num, n_vertices, 2), dtype=dtype)
  return canonicalize(pts)


def _segment_distance(points, a, b):
  """Distance from points to the segments [a, b].

  Args:
    points: [..., 2].
    a, b: [m, 2] segment end points.

  Returns:
    [..., m] Euclidean distances (JH units).
  """
  p = points[..., None, :]  # [..., 1, 2]
  edge = b - a  # [m, 2]
  rel = p - a  # [..., m, 2]
  # A zero-length edge (repeated vertex) projects onto its start point.
  t = safe_div(jnp.sum(rel * edge, axis=-1), jnp.sum(edge * edge, axis=-1))
  t = jnp.clip(t, 0.0, 1.0)
  return safe_norm(rel - t[..., None] * edge)


@jax.jit
def contains(points, vertices):
  """Even-odd (crossing parity) point-in-polygon test.

  Uses the half-open rule on y, so a ray through a vertex is counted once;
  division-free, hence no inf/NaN for horizontal edges. Orientation does not
  matter. Points exactly on the boundary may fall either way.

  Args:
    points: [..., 2] (x, y).
    vertices: [n, 2] polygon.

  Returns:
    [...] bool, True inside.
  """
  a = vertices
  b = jnp.roll(vertices, -1, axis=0)
  px, py = points[..., None, 0], points[..., None, 1]  # [..., 1]
  straddles = (a[:, 1] > py) != (b[:, 1] > py)  # [..., n]
  # The edge crosses the horizontal line y = py at some x; that x lies right
  # of px iff this cross product has the sign of (b_y - a_y).
  cross = (b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (px - a[:, 0]) * (
      b[:, 1] - a[:, 1]
  )
  right = (cross > 0) == (b[:, 1] > a[:, 1])
  crossings = jnp.sum(straddles & right, axis=-1)
  return (crossings % 2) == 1


@jax.jit
def signed_distance(points, vertices):
  """Exact Euclidean signed distance to a simple polygon, positive inside.

  The distance is the minimum over edges of the point-segment distance; the
  sign comes from the crossing-parity test. The sign is piecewise constant
  and the distance vanishes on the boundary, so the result is continuous and
  differentiable almost everywhere w.r.t. points and vertices; gradients are
  finite everywhere (zero-length edges, points on vertices).

  Args:
    points: [..., 2] (x, y) query points, JH units.
    vertices: [n, 2] simple polygon (any orientation, possibly non-convex).

  Returns:
    [...] signed distance in JH units (> 0 inside, < 0 outside).
  """
  vertices = jnp.asarray(vertices)
  points = jnp.asarray(points, dtype=jnp.result_type(points, vertices))
  dist = jnp.min(
      _segment_distance(points, vertices, jnp.roll(vertices, -1, axis=0)),
      axis=-1,
  )
  return jnp.where(contains(points, vertices), dist, -dist)
