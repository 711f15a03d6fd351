"""Tests for rlhf_tf.render.polygon and polygon_validation (paper eq. 2)."""

import itertools

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
from matplotlib.path import Path
import numpy as np
import pytest

from rlhf_tf.render import polygon as P
from rlhf_tf.render import polygon_validation as V

SQUARE = np.array([[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]])
TRIANGLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
# Non-convex L shape (counter-clockwise), and a clockwise arrow.
L_SHAPE = np.array(
    [[0.1, 0.1], [0.9, 0.1], [0.9, 0.4], [0.4, 0.4], [0.4, 0.9], [0.1, 0.9]]
)
ARROW = np.array(
    [
        [0.1, 0.5],
        [0.5, 0.9],
        [0.5, 0.65],
        [0.9, 0.65],
        [0.9, 0.35],
        [0.5, 0.35],
        [0.5, 0.1],
    ]
)[::-1]


def _brute_force_sd(points, vertices, samples=2001):
  """Signed distance by dense sampling of the boundary + matplotlib inside."""
  t = np.linspace(0.0, 1.0, samples)[:, None]
  a, b = vertices, np.roll(vertices, -1, axis=0)
  boundary = np.concatenate([ai + t * (bi - ai) for ai, bi in zip(a, b)])
  d = np.min(np.linalg.norm(points[:, None] - boundary[None], axis=-1), -1)
  inside = Path(vertices).contains_points(points)
  return np.where(inside, d, -d)


# --- validate_polygon -------------------------------------------------------


@pytest.mark.parametrize(
    'vertices, message',
    [
        (
            [[0.1, 0.1], [np.nan, 0.4], [0.5, 0.9]],
            'vertex 1 (nan, 0.4) is not ' 'finite',
        ),
        (
            [[0.1, 0.1], [0.9, 0.1], [1.3, 0.4], [0.5, 0.9]],
            'vertex 2 (1.3, 0.4) lies outside [0, 1]^2',
        ),
        (
            [[0.1, 0.1], [-0.1, 0.5], [0.5, 0.9]],
            'vertex 1 (-0.1, 0.5) lies ' 'outside',
        ),
        ([[0.1, 0.1], [0.9, 0.9]], 'at least 3 vertices, got 2'),
        ([0.1, 0.2, 0.3], 'shape [n, 2]'),
        (
            [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]],
            'edges 0-1 and 2-3 intersect',
        ),
        (
            [[0.1, 0.1], [0.5, 0.1], [0.9, 0.5], [0.9, 0.1], [0.5, 0.9]],
            'edges 1-2 and 3-4 intersect',
        ),
        ([[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]], 'collinear'),
        ([[0.1, 0.1], [0.2, 0.2], [0.9, 0.9], [0.3, 0.3]], 'collinear'),
        (
            [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.9, 0.1]],
            'vertices 1 and 3 coincide at (0.9, 0.1)',
        ),
        (
            [[0.1, 0.1], [0.1, 0.1], [0.9, 0.1], [0.5, 0.9]],
            'vertices 0 and 1 coincide',
        ),
        (
            [[0.1, 0.1], [0.9, 0.1], [0.5, 0.1], [0.5, 0.9]],
            'edges 0-1 and 1-2 overlap',
        ),
        ([[0.1, 0.1], [0.9, 0.1], [0.9, 0.1002]], 'below min_area'),
    ],
)
def test_validate_polygon_rejects(vertices, message):
  with pytest.raises(V.PolygonError) as err:
    V.validate_polygon(vertices)
  assert message in str(err.value), str(err.value)


def test_validate_polygon_accepts_and_keeps_order():
  for good in (SQUARE, TRIANGLE, L_SHAPE, ARROW, SQUARE[::-1]):
    out = V.validate_polygon(good.tolist())
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, good)
  # Corners of the domain are inside [0, 1]^2.
  V.validate_polygon([[0, 0], [1, 0], [1, 1], [0, 1]])
  # A straight angle (redundant vertex) is still a simple polygon.
  V.validate_polygon([[0.1, 0.1], [0.5, 0.1], [0.9, 0.1], [0.5, 0.9]])
  # min_area is honoured both ways.
  thin = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.1002]]
  V.validate_polygon(thin, min_area=5e-5)


def test_is_simple():
  assert V.is_simple(SQUARE) and V.is_simple(L_SHAPE) and V.is_simple(ARROW)
  assert not V.is_simple([[0, 0], [1, 1], [1, 0], [0, 1]])  # Bow-tie.
  assert not V.is_simple([[0, 0], [1, 0], [0.5, 0.5], [1, 0]])
  # Touching edges (vertex on a non-adjacent edge) is not simple.
  assert not V.is_simple([[0, 0], [1, 0], [1, 1], [0.5, 0], [0, 1]])
  assert not V.is_simple([[0, 0], [1, 1]])


# --- area, canonical form, random actions -----------------------------------


def test_polygon_area_closed_forms():
  unit = jnp.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
  np.testing.assert_allclose(P.polygon_area(unit), 1.0)
  np.testing.assert_allclose(P.polygon_area(unit[::-1]), -1.0)
  np.testing.assert_allclose(P.polygon_area(TRIANGLE), 0.5)
  # L: 0.8 x 0.3 + 0.3 x 0.5.
  np.testing.assert_allclose(P.polygon_area(L_SHAPE), 0.39, rtol=1e-6)
  batch = jnp.stack([unit, unit[::-1] * 0.5])
  np.testing.assert_allclose(P.polygon_area(batch[None]), [[1.0, -0.25]])
  poly = P.Polygon(vertices=batch)
  assert poly.num_vertices == 4 and poly.batch_shape == (2,)
  np.testing.assert_allclose(poly.canonical().area(), [1.0, 0.25])


def test_canonicalize_makes_random_bowties_simple():
  pts = np.asarray(jax.random.uniform(jax.random.key(1), (200, 4, 2)))
  raw_simple = [V.is_simple(p) for p in pts]
  assert not all(raw_simple)  # Random orders do give bow-ties ...
  canon = np.asarray(jax.jit(P.canonicalize)(pts))
  assert all(V.is_simple(p) for p in canon)  # ... canonical ones do not.
  assert np.all(P.polygon_area(canon) > 0)  # Counter-clockwise.
  # Same vertex sets.
  np.testing.assert_allclose(
      np.sort(canon[..., 0], -1), np.sort(pts[..., 0], -1)
  )


def test_canonicalize_idempotent_and_permutation_invariant():
  pts = jax.random.uniform(jax.random.key(2), (50, 5, 2))
  canon = P.canonicalize(pts)
  np.testing.assert_array_equal(P.canonicalize(canon), canon)
  for perm in itertools.islice(itertools.permutations(range(5)), 0, 120, 7):
    np.testing.assert_array_equal(P.canonicalize(pts[:, perm]), canon)
  # Batch-agnostic: vmap and extra leading dims agree with the flat call.
  np.testing.assert_array_equal(jax.vmap(P.canonicalize)(pts), canon)
  np.testing.assert_array_equal(
      P.canonicalize(pts.reshape(5, 10, 5, 2)).reshape(50, 5, 2), canon
  )


def test_canonicalize_gradient_is_a_permutation():
  pts = jax.random.uniform(jax.random.key(3), (4, 2))
  g = jax.grad(lambda v: jnp.sum(P.canonicalize(v)[0]))(pts)
  assert np.isfinite(np.asarray(g)).all()
  assert float(jnp.sum(g)) == pytest.approx(2.0)
  # A vertex on the centroid (arctan2(0, 0)) keeps gradients finite.
  pts = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1 / 3, 1 / 3]])
  pts = pts.at[3].set(jnp.mean(pts[:3], 0) * 0.75)
  g = jax.grad(lambda v: jnp.sum(P.canonicalize(v) ** 2))(pts)
  assert np.isfinite(np.asarray(g)).all()


def test_random_actions():
  a = P.random_actions(jax.random.key(0), 64)
  b = P.random_actions(jax.random.key(0), 64)
  c = P.random_actions(jax.random.key(1), 64)
  assert a.shape == (64, 4, 2) and a.dtype == jnp.float32
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  assert all(V.is_simple(p) for p in np.asarray(a))
  assert P.random_actions(jax.random.key(0), 3, n_vertices=6).shape == (3, 6, 2)
  with pytest.raises(ValueError, match='n_vertices'):
    P.random_actions(jax.random.key(0), 3, n_vertices=2)


# --- signed distance --------------------------------------------------------


def test_signed_distance_square_closed_form():
  pts = jnp.array(
      [
          [0.5, 0.5],
          [0.3, 0.5],
          [0.5, 0.75],
          [1.0, 0.5],
          [0.5, 0.0],
          [1.0, 1.0],
          [0.0, 0.0],
          [0.8, 0.8],
          [0.5, 0.2],
      ]
  )
  want = [0.3, 0.1, 0.05, -0.2, -0.2, -np.sqrt(0.08), -np.sqrt(0.08), 0.0, 0.0]
  np.testing.assert_allclose(P.signed_distance(pts, SQUARE), want, atol=1e-6)
  # Orientation does not matter.
  np.testing.assert_allclose(
      P.signed_distance(pts, SQUARE[::-1]), want, atol=1e-6
  )


def test_signed_distance_triangle_closed_form():
  pts = jnp.array(
      [
          [0.25, 0.25],
          [0.1, 0.2],
          [1.0, 1.0],
          [-1.0, -1.0],
          [2.0, 0.0],
          [0.0, 0.0],
          [0.5, -0.5],
      ]
  )
  want = [0.25, 0.1, -np.sqrt(0.5), -np.sqrt(2.0), -1.0, 0.0, -0.5]
  np.testing.assert_allclose(P.signed_distance(pts, TRIANGLE), want, atol=1e-6)


@pytest.mark.parametrize('vertices', [L_SHAPE, ARROW])
def test_signed_distance_nonconvex_brute_force(vertices):
  rng = np.random.default_rng(0)
  pts = rng.uniform(-0.2, 1.2, (300, 2))
  want = _brute_force_sd(pts, vertices)
  got = P.signed_distance(jnp.asarray(pts, jnp.float32), vertices)
  # Boundary sampled every <= 1/2000: distances within ~2.5e-4.
  np.testing.assert_allclose(got, want, atol=3e-4)
  # Points batch-agnostic: [..., 2] shapes pass through.
  got2 = P.signed_distance(
      jnp.asarray(pts, jnp.float32).reshape(3, 100, 2), vertices
  )
  np.testing.assert_array_equal(got2.reshape(-1), got)


def test_contains_matches_matplotlib():
  rng = np.random.default_rng(1)
  pts = rng.uniform(0, 1, (500, 2))
  for v in (SQUARE, TRIANGLE, L_SHAPE, ARROW):
    np.testing.assert_array_equal(
        P.contains(jnp.asarray(pts), v), Path(v).contains_points(pts)
    )


def test_signed_distance_check_grads():
  pts = jnp.array(
      [[0.5, 0.45], [0.3, 0.2], [0.95, 0.6], [0.15, 0.05], [0.62, 0.71]]
  )
  with jax.enable_x64(True):
    v = jnp.asarray(L_SHAPE + 0.01 * np.sin(np.arange(12)).reshape(6, 2))
    p = jnp.asarray(pts, jnp.float64)
    check_grads(
        jax.jit(lambda v: P.signed_distance(p, v)),
        (v,),
        order=1,
        modes=['rev', 'fwd'],
        eps=1e-6,
    )
    check_grads(
        jax.jit(lambda p: P.signed_distance(p, v)),
        (p,),
        order=1,
        modes=['rev', 'fwd'],
        eps=1e-6,
    )
    # Inside the square, d = distance to the nearest edge: here the left one,
    # so d(d)/dx_point = 1 and only the left edge's vertices move it.
    g = jax.grad(lambda p: P.signed_distance(p, jnp.asarray(SQUARE)))(
        jnp.array([0.3, 0.5])
    )
    np.testing.assert_allclose(g, [1.0, 0.0], atol=1e-12)


def test_signed_distance_finite_gradients_degenerate():
  # Zero-length edge (repeated vertex) and query points on vertices/edges.
  v = jnp.array([[0.2, 0.2], [0.2, 0.2], [0.8, 0.2], [0.5, 0.8]])
  pts = jnp.array([[0.2, 0.2], [0.8, 0.2], [0.5, 0.2], [0.5, 0.5], [0.0, 0.0]])
  d = P.signed_distance(pts, v)
  assert np.isfinite(np.asarray(d)).all()
  np.testing.assert_allclose(d[:3], 0.0, atol=1e-7)
  gv = jax.jit(jax.jacrev(P.signed_distance, argnums=(0, 1)))(pts, v)
  for g in gv:
    assert np.isfinite(np.asarray(g)).all()
  # A fully collapsed polygon.
  point = jnp.full((4, 2), 0.5)
  g = jax.grad(lambda v: jnp.sum(P.signed_distance(pts, v)))(point)
  assert np.isfinite(np.asarray(g)).all()
