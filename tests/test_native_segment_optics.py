"""A segment's optics four pieces at once (rlhf_tf.render.
native_segment_optics) against native_segment_plan.segment_forward, one
piece after another: bit for bit where no piece takes the vector expm1,
within its rounding otherwise (hypothesis: random tables of both dtypes,
slopes that split, flat pieces, empty segments, negative extinction,
shading on and off); and the vector expm1 within an ulp of libm's."""

from hypothesis import given, settings
from hypothesis import strategies as st
import numba
import numpy as np

from rlhf_tf.render import native_segment_optics
from rlhf_tf.render.native_segment_math import _SERIES_Z
from rlhf_tf.render.native_segment_optics import (
    expm1_lanes,
    segment_optics,
)
from rlhf_tf.render.native_segment_plan import (
    _lookup,
    segment_forward,
    split,
    split_shading,
)


@numba.njit
def _expm1(x):
  out = np.empty_like(x)
  for i in range(0, x.shape[0], 4):
    out[i : i + 4] = expm1_lanes((x[i], x[i + 1], x[i + 2], x[i + 3]))
  return out


def test_expm1_lanes_is_libm_s_within_an_ulp():
  rng = np.random.default_rng(0)
  lo = native_segment_optics._EXPM1_MIN  # pylint: disable=protected-access
  hi = native_segment_optics._EXPM1_MAX  # pylint: disable=protected-access
  for a, b in ((-0.35, -1e-6), (-1.0, -0.35), (-8.0, -1.0), (lo, -8.0),
               (-1e-6, hi)):  # fmt: skip
    x = np.concatenate([rng.uniform(a, b, 40_000), [a, b, -0.5 * np.log(2)]])
    x = np.concatenate([x, np.zeros(-len(x) % 4)])
    want = np.expm1(x)
    got = _expm1(x)
    ulps = np.abs(got - want) / np.spacing(np.abs(want))
    assert ulps.max() <= 1.0, (a, b, ulps.max())
    assert np.mean(got == want) > 0.8, (a, b)
  below = np.array([lo - 1e-9, -60.0, -745.0, -1e300])
  np.testing.assert_array_equal(_expm1(below), np.expm1(below))


@numba.njit
def _both(table, bins_x, bins_y, ends, half, min_den, optics):
  """(segment_forward's (lt, e[4]), segment_optics's, whether a piece took
  the vector expm1)."""
  points = np.zeros((5, 4))
  lengths = np.zeros(4)
  taus = np.zeros(2)
  e = np.zeros((5, 4))
  split(ends, half, bins_x, min_den, points, lengths, taus)
  split_shading(ends, taus, points)
  lt = segment_forward(table, bins_x, bins_y, points, lengths, optics, e)
  want = (lt, e[4, 0], e[4, 1], e[4, 2], e[4, 3])
  got = segment_optics(table, bins_x, bins_y, points, lengths, optics)
  vector_expm1 = False
  for k in range(4):
    tau = lengths[k] * _lookup(table, bins_x, bins_y, points, lengths, k)[0]
    vector_expm1 |= tau != 0.0 and _SERIES_Z <= abs(tau) and -tau <= 0.34
  return want, got, vector_expm1


def _random_table(rng, bins_y, bins_x, scale, negative, dtype):
  """P rising along u (extinction >= 0; or any sign), some bins all 0."""
  table = rng.uniform(0.0, 1.0, (bins_y * bins_x, 8)) * scale
  rising = np.cumsum(table[:, 4:].reshape(bins_y, bins_x, 4), 1)
  table[:, :4] = rising.reshape(-1, 4)
  if negative:
    table -= 0.5 * scale
  table[rng.random(bins_y * bins_x) < 0.3] = 0.0
  return table.astype(dtype)


def _random_ends(rng, bins_y, bins_x, slope):
  ends = np.zeros((3, 5))
  ends[:, 0] = rng.uniform(-1.0, bins_x + 1.0, 3)
  if rng.random() < 0.3:  # A flat piece (|du| <= TINY_DU).
    ends[:, 0] = ends[0, 0] + rng.normal(0.0, 1e-4, 3)
  ends[:, 1] = rng.uniform(-1.0, bins_y + 1.0, 3)
  ends[:, 2] = rng.normal(0.0, slope, 3)
  ends[:, 3:] = rng.uniform(0.0, 1.0, (3, 2))
  return ends


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**20),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([0.0, 1e-3, 1.0, 30.0]),
    slope=st.sampled_from([0.0, 3.0, 60.0]),
    half=st.sampled_from([0.0, 0.05, 0.5]),
    negative=st.booleans(),
)
def test_segment_optics_is_segment_forward(
    seed, dtype, scale, slope, half, negative
):
  rng = np.random.default_rng(seed)
  bins_y, bins_x = 9, 13
  table = _random_table(rng, bins_y, bins_x, scale, negative, dtype)
  min_den = float(np.finfo(dtype).eps) ** 2
  for _ in range(40):
    ends = _random_ends(rng, bins_y, bins_x, slope)
    for shading in (True, False):
      optics = (shading, 0.3, 0.6, 0.25)
      want, got, vector_expm1 = _both(
          table, bins_x, bins_y, ends, half, min_den, optics
      )
      if not vector_expm1:
        assert got == want, (got, want)
      size = max(1.0, max(abs(w) for w in want))
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-14 * size)


def test_thin_segments_are_bit_for_bit():
  """Every piece on phi's series (optical depth < _SERIES_Z), split or
  not, shaded or not: the same floats as segment_forward."""
  rng = np.random.default_rng(7)
  bins_y, bins_x = 9, 13
  for dtype in (np.float32, np.float64):
    table = _random_table(rng, bins_y, bins_x, 1e-3, False, dtype)
    min_den = float(np.finfo(dtype).eps) ** 2
    for trial in range(200):
      ends = _random_ends(rng, bins_y, bins_x, 60.0 if trial % 2 else 0.5)
      for shading in (True, False):
        want, got, vector_expm1 = _both(
            table, bins_x, bins_y, ends, 0.4, min_den, (shading, 0.3, 0.6, 0.2)
        )
        assert not vector_expm1
        assert got == want, (trial, got, want)
