"""The transparent segments' adjoint (rlhf_tf.render.native_clear_adjoint):
the per-ray pending sums add what the per-piece scatter adds (float64, up
to rounding), shaded or not; a segment split leaves whole adds from its
ends what split and clear_adjoint add (bit for bit); and a ``borrowed``
view is the array's memory (rlhf_tf.render.native_borrow)."""

import numba
import numpy as np
import pytest

from rlhf_tf.render import native_clear_adjoint as clear
from rlhf_tf.render.native_borrow import borrowed
from rlhf_tf.render.native_segment_plan import (
    NUM_PIECES,
    NUM_POINTS,
    split,
    split_shading,
)


@numba.njit
def _per_piece(acc, bins_x, bins_y, points, lengths, optics, g_e, g_lt):
  """Every piece scattered on its own (the walk before pending sums)."""
  shading = optics[0]
  for k in range(NUM_PIECES):
    l = lengths[k]
    if l == 0.0:
      continue
    s = d = 0.0
    if shading:
      s = points[k, 3] + 0.5 * (points[k + 1, 3] - points[k, 3])
      d = points[k, 2] + 0.5 * (points[k + 1, 2] - points[k, 2])
    g_mean = clear._g_mean(optics, g_e, g_lt, l, l * s, l * d)
    clear.scatter_piece(acc, bins_x, bins_y, points, k, g_mean)


@numba.njit
def _pending(acc, bins_x, bins_y, segments, lengths, optics, g_e, g_lt):
  """The segments of one ray through clear_adjoint, then a flush."""
  pend = clear.none_pending()
  for i in range(segments.shape[0]):
    pend = clear.clear_adjoint(
        acc,
        bins_x,
        bins_y,
        segments[i],
        lengths[i],
        optics,
        g_e,
        g_lt,
        pend,
    )
  clear.flush(acc, bins_x, optics, g_e, g_lt, pend)


@pytest.mark.parametrize('shading', [False, True])
def test_pending_sums_add_what_each_piece_adds(shading):
  rng = np.random.default_rng(int(shading))
  bins_x, bins_y = 6, 5
  n = 40
  segments = np.zeros((n, NUM_POINTS, 4))
  # Mostly within a column and a few gradient rows (air-like runs), some
  # across columns; u, v clipped to the table as the split leaves them.
  col = rng.integers(0, bins_x, n)[:, None] + 0.0
  segments[..., 0] = col + rng.uniform(0.0, 0.999, (n, NUM_POINTS))
  cross = rng.uniform(size=n) < 0.3
  segments[cross, :, 0] += rng.uniform(-1.5, 1.5, (cross.sum(), NUM_POINTS))
  segments[..., 0] = np.clip(segments[..., 0], 0.0, bins_x)
  segments[..., 1] = np.clip(rng.normal(1.5, 0.8, (n, NUM_POINTS)), 0, None)
  segments[..., 2:] = rng.uniform(0.0, 1.0, (n, NUM_POINTS, 2))
  lengths = rng.uniform(0.1, 0.6, (n, NUM_PIECES))
  lengths[rng.uniform(size=(n, NUM_PIECES)) < 0.4] = 0.0
  optics = (shading, 0.3, 0.6, 0.4)
  g_e = rng.normal(size=3)
  g_lt = float(rng.normal())
  ref = np.zeros((bins_x * bins_y, 8))
  for i in range(n):
    _per_piece(ref, bins_x, bins_y, segments[i], lengths[i], optics, g_e, g_lt)
  got = np.zeros_like(ref)
  _pending(got, bins_x, bins_y, segments, lengths, optics, g_e, g_lt)
  assert np.abs(ref).max() > 0.1
  np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@numba.njit
def _unsplit_both_ways(ends, half, bins_x, bins_y, optics, g_e, g_lt):
  """(acc by clear_unsplit, acc by split + clear_adjoint, taus) of one
  segment ends [3, 5] of one ray, each flushed."""
  out = []
  taus = np.zeros(2)
  for way in range(2):
    acc = np.zeros((bins_x * bins_y, 8))
    pend = clear.none_pending()
    if way == 0:
      pend = clear.clear_unsplit(
          acc, bins_x, bins_y, ends, half, optics, g_e, g_lt, pend
      )
    else:
      points = np.zeros((NUM_POINTS, 4))
      lengths = np.zeros(NUM_PIECES)
      split(ends, half, bins_x, 1e-30, points, lengths, taus)
      split_shading(ends, taus, points)
      pend = clear.clear_adjoint(
          acc, bins_x, bins_y, points, lengths, optics, g_e, g_lt, pend
      )
    clear.flush(acc, bins_x, optics, g_e, g_lt, pend)
    out.append(acc)
  return out[0], out[1], taus


@pytest.mark.parametrize('shading', [False, True])
def test_a_segment_split_leaves_whole_adds_the_same_from_its_ends(shading):
  rng = np.random.default_rng(7 + int(shading))
  bins_x, bins_y = 6, 5
  optics = (shading, 0.3, 0.6, 0.4)
  seen = 0
  for trial in range(60):
    ends = np.zeros((3, 5))
    # u beyond the table on both sides (clipped), v across rows; slopes of
    # one sign (or 0) along each half, some across columns.
    ends[:, 0] = rng.uniform(-0.5, bins_x + 0.5, 3)
    ends[:, 1] = rng.uniform(0.0, bins_y - 1.0, 3)
    sign = rng.choice([-1.0, 0.0, 1.0])
    ends[:, 2] = sign * rng.uniform(0.0, 3.0, 3)
    ends[:, 3:] = rng.uniform(0.0, 1.0, (3, 2))
    half = 0.0 if trial == 0 else rng.uniform(0.1, 0.6)
    assert clear.unsplit(ends, half)
    got, ref, taus = _unsplit_both_ways(
        ends, half, bins_x, bins_y, optics, rng.normal(size=3), rng.normal()
    )
    assert np.all(taus == 1.0)
    np.testing.assert_array_equal(got, ref)
    seen += np.abs(ref).max() > 0
  assert seen > 50
  # Bracketing slopes: split splits it (a half's tau < 1), unsplit says so.
  ends[:, 2] = (1.0, -1.0, 1.0)
  assert not clear.unsplit(ends, 0.5)


def test_an_unshaded_segment_in_one_bin_adds_the_same_split_or_not():
  """one_bin: unshaded, clear_unsplit of a segment whose pieces all read
  one column and row pair adds what split + clear_adjoint add (crests
  inside the column: taus < 1), up to rounding; where a crest reaches
  the next column, one_bin says no."""
  rng = np.random.default_rng(11)
  bins_x, bins_y = 6, 5
  optics = (False, 0.3, 0.6, 0.4)
  crests = 0
  for _ in range(200):
    ends = np.zeros((3, 5))
    col, row = rng.integers(0, bins_x), rng.integers(0, bins_y - 1)
    ends[:, 0] = col + rng.uniform(0.3, 0.7, 3)
    ends[:, 1] = row + rng.uniform(0.0, 0.999, 3)
    ends[:, 2] = rng.uniform(-0.4, 0.4, 3)  # Slopes of either sign.
    half = rng.uniform(0.1, 0.6)
    if not clear.one_bin(ends, half, bins_x, bins_y):
      continue
    got, ref, taus = _unsplit_both_ways(
        ends, half, bins_x, bins_y, optics, rng.normal(size=3), rng.normal()
    )
    crests += np.any(taus < 1.0)
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-14)
  assert crests > 20
  # A crest that reaches the next column: the pieces read two columns.
  ends = np.zeros((3, 5))
  ends[:, 0] = (2.5, 2.9, 2.5)
  ends[:, 1] = 1.5
  ends[:, 2] = (4.0, -4.0, -4.0)
  assert not clear.one_bin(ends, 0.5, bins_x, bins_y)
  got, ref, _ = _unsplit_both_ways(
      ends, 0.5, bins_x, bins_y, optics, np.ones(3), 1.0
  )
  assert np.abs(got - ref).max() > 1e-3
  # A segment across two gradient rows: no.
  ends[:, 0] = 2.5
  ends[:, 1] = (1.5, 1.9, 2.1)
  ends[:, 2] = 0.0
  assert not clear.one_bin(ends, 0.5, bins_x, bins_y)


@numba.njit
def _write_through(a):
  b = borrowed(a)
  b[1, 2] = 7.0
  return b.sum(), b.shape[0], b.strides[0]


def test_a_borrowed_view_is_the_array_itself():
  a = np.arange(12.0).reshape(3, 4)
  total, rows, stride = _write_through(a)
  assert a[1, 2] == 7.0
  assert total == a.sum() and rows == 3 and stride == a.strides[0]
