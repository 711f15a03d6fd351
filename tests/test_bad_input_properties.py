"""Property-based tests (hypothesis) of polygon validation and TF tables:
whatever a user types, validate_polygon returns a valid polygon or raises a
PolygonError naming it; TF tables are finite opacities in [0, alpha_max] or a
PolygonError -- never NaN tables, never raw numpy errors."""

from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import numpy as np

from rlhf_tf.render import polygon, polygon_validation, transfer_function

NAME = 'hypothesis polygon'
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
UNIT = st.floats(0.0, 1.0, allow_nan=False)
SCALARS = st.one_of(
    FLOATS,
    st.integers(-5, 5),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.complex_numbers(max_magnitude=2),
)
# Anything JSON-ish a user could put in an actions file or a flag.
JUNK = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=6), max_leaves=24
)
VERTICES = st.integers(3, 7).flatmap(
    lambda n: st.lists(st.tuples(UNIT, UNIT), min_size=n, max_size=n)
)


def _check_valid(v):
  assert v.dtype == np.float64 and v.ndim == 2 and v.shape[1] == 2
  assert v.shape[0] >= 3 and np.all((v >= 0) & (v <= 1))
  assert polygon_validation.is_simple(v)
  assert abs(float(polygon.polygon_area(v))) >= 1e-4 * (1 - 1e-9)


@settings(max_examples=300, deadline=None)
@given(JUNK)
def test_validate_polygon_on_anything(value):
  try:
    v = polygon_validation.validate_polygon(value, name=NAME)
  except polygon_validation.PolygonError as err:
    assert str(err).startswith(NAME + ': '), str(err)
    return
  _check_valid(v)


@settings(max_examples=300, deadline=None)
@given(VERTICES)
def test_validate_polygon_on_unit_square_points(points):
  try:
    v = polygon_validation.validate_polygon(points, name=NAME)
  except polygon_validation.PolygonError as err:
    assert str(err).startswith(NAME + ': ')
    return
  _check_valid(v)
  assert np.array_equal(v, np.asarray(points))  # order and values kept
  # A validated action always makes a TF table.
  assert polygon_validation.polygon_batch_problem(v) is None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.integers(3, 5).flatmap(
        lambda n: st.lists(st.tuples(FLOATS, FLOATS), min_size=n, max_size=n)
    ),
    st.floats(0.05, 1.0),
)
def test_opacity_table_is_finite_or_refused(points, alpha_max):
  try:
    table = np.asarray(
        transfer_function.opacity_table(
            np.asarray(points, np.float64), 8, tau=0.05, alpha_max=alpha_max
        )
    )
  except polygon_validation.PolygonError as err:
    assert str(err).startswith('opacity_table vertices')
    return
  assert np.all(np.isfinite(table))
  assert np.all((table >= 0) & (table <= alpha_max * (1 + 1e-6)))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 6))
def test_canonical_random_actions_always_make_tables(seed, n):
  import jax  # pylint: disable=g-import-not-at-top

  actions = np.asarray(polygon.random_actions(jax.random.key(seed), 16, n))
  assert polygon_validation.polygon_batch_problem(actions) is None
  table = np.asarray(transfer_function.tf_table(actions[:, None], 8))
  assert table.shape == (16, 8, 8, 4) and np.all(np.isfinite(table))
