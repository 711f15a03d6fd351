"""Segment boxes of the pre-integrated cache (rlhf_tf.render.
native_segment_boxes): each stored box is surely_transparent's and holds
every bin its segment's pieces read (hypothesis: random fields, steep
slopes, partial segments, float32 and float64 fields), and the forward
that reads them gives the image, transmittance and segment counts of the
one that computes them, bit for bit."""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from render_testing import random_table, small_cache
from test_native_block_boxes import _read_bins

from rlhf_tf.render import (
    cached_native_segments,
    native_block_boxes,
    native_segment_boxes,
    native_segment_plan,
    preintegration,
    raymarch,
)

EXACT = raymarch.RenderSettings(
    step_mm=1.1,
    background=(0.1, 0.2, 0.3),
    termination_transmittance=0.0,
    cache_tile_rays=24,
    preintegrate=True,
)


def _unpack(b):
  b = int(b)
  return b & 255, (b >> 8 & 255) + 1, b >> 16 & 255, (b >> 24 & 255) + 1


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    slope=st.sampled_from([0.5, 5.0, 80.0]),
    bins=st.sampled_from([(8, 8), (5, 11), (256, 256)]),
    step=st.floats(0.3, 2.0),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_each_box_is_surely_transparents_and_holds_the_bins_read(
    seed, slope, bins, step, dtype
):
  by, bx = bins
  rng = np.random.default_rng(seed)
  tile, rows = 3, 4 * 32
  shape = (rows, tile)
  u = rng.uniform(0.0, bx, shape).astype(dtype)
  u_mid = rng.uniform(0.0, bx, shape).astype(dtype)
  v = rng.uniform(0.0, by - 1.0, shape).astype(dtype)
  v_mid = rng.uniform(0.0, by - 1.0, shape).astype(dtype)
  du = (rng.normal(size=shape) * slope).astype(dtype)
  du_mid = (rng.normal(size=shape) * slope).astype(dtype)
  first_row = np.array([0, 64])
  num_steps = np.array([40, 29])
  start = rng.uniform(0.0, step, (2, tile)).astype(dtype)
  length = rng.uniform(0.5, 1.0, (2, tile)) * num_steps[:, None] * step
  length = length.astype(dtype)
  start[1, 2] = length[1, 2] = 0.0  # A padding ray: no segment.
  fields = (u, v, du, u_mid, v_mid, du_mid)
  boxes = native_segment_boxes.segment_boxes(
      fields, start, length, first_row, num_steps, step, (by, bx)
  )
  assert boxes.shape == shape and boxes.dtype == np.uint32
  # A sparse occupancy: surely_transparent answers both ways.
  sparse = rng.uniform(size=(by * bx, 8)).astype(dtype)
  sparse[rng.uniform(size=by * bx) < 0.7, 4] = 0.0
  occ = native_segment_plan.occupancy(sparse, bx)
  ends = np.zeros((3, 5))
  points = np.zeros((5, 4))
  lengths = np.zeros(4)
  taus = np.zeros(2)
  step_d = dtype(step)
  checked = 0
  for t in range(2):
    for m in range(tile):
      lo, hi = start[t, m], start[t, m] + length[t, m]
      for i in range(num_steps[t]):
        row = first_row[t] + i
        fi = dtype(i) * step_d
        if fi >= hi:
          assert boxes[row, m] == 0  # Never walked.
          continue
        seg = min(max(hi - fi, 0), step_d) - min(max(lo - fi, 0), step_d)
        for k, r, (fu, fv, fd) in (
            (0, row, (u, v, du)),
            (1, row, (u_mid, v_mid, du_mid)),
            (2, row + 1, (u, v, du)),
        ):
          ends[k, :3] = fu[r, m], fv[r, m], fd[r, m]
        c0, c1, r0, r1 = _unpack(boxes[row, m])
        count = occ[r1, c1] - occ[r0, c1] - occ[r1, c0] + occ[r0, c0]
        surely = native_segment_plan.surely_transparent(
            occ, bx, by, ends, 0.5 * seg
        )
        assert (count == 0) == surely
        native_segment_plan.split(
            ends, 0.5 * seg, bx, np.finfo(dtype).eps ** 2, points,
            lengths, taus,
        )  # fmt: skip
        read = _read_bins(points, lengths, bx, by)
        if read is None:
          continue
        (k0, k1), (j0, j1) = read
        assert c0 <= k0 and k1 < c1, (read, (c0, c1))
        assert r0 <= j0 and j1 < r1, (read, (r0, r1))
        checked += 1
  assert checked > 0


def test_tables_of_more_than_256_bins_a_side_store_none():
  fields = [np.zeros((32, 2), np.float32)] * 6
  args = (np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32), [0], [1])
  none = native_segment_boxes.segment_boxes(fields, *args, 1.0, (8, 257))
  assert none is None
  got = native_segment_boxes.segment_boxes(fields, *args, 1.0, (256, 8))
  assert got.shape == (32, 2)


_cache = small_cache


def _steeper(cache, scale):
  """Slopes du scaled (more crests, peaks clipped to the table) and both
  kinds of boxes made anew."""
  tiles = cache.tiles
  tiles = tiles.replace(du=tiles.du * scale, du_mid=tiles.du_mid * scale)
  box = native_block_boxes.of_tiles(tiles, cache.step_mm, cache.bins)
  seg_box = native_segment_boxes.of_tiles(tiles, cache.step_mm, cache.bins)
  return cache.replace(
      tiles=tiles.replace(box=jnp.asarray(box), seg_box=jnp.asarray(seg_box))
  )


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    azimuth=st.floats(0.0, 360.0),
    shading=st.booleans(),
    threshold=st.sampled_from([0.0, 1e-3, 0.3]),
    clear_columns=st.integers(2, 6),
    slope_scale=st.sampled_from([1.0, 30.0]),
)
def test_stored_boxes_change_nothing(
    seed, azimuth, shading, threshold, clear_columns, slope_scale
):
  s = EXACT.replace(shading=shading, termination_transmittance=threshold)
  cache = _steeper(_cache(s, seed % 5, azimuth), slope_scale)
  assert cache.tiles.seg_box is not None
  table = random_table(seed=seed).at[:, :clear_columns, 3].set(0.0)
  pv = preintegration.segment_table(table, s.reference_step_mm)
  stored = cached_native_segments.march(cache.tiles, pv, s)
  computed = cached_native_segments.march(
      cache.tiles.replace(seg_box=None), pv, s
  )
  for a, b in zip(stored, computed):
    np.testing.assert_array_equal(a, b)
  assert float(np.abs(np.asarray(stored[0])).max()) > 0.0


def test_stored_boxes_change_nothing_in_float64():
  with jax.enable_x64(True):
    s = EXACT.replace(shading=True)
    cache = _steeper(_cache(s, 3, 40.0, np.float64), 30.0)
    table = random_table(seed=5, dtype=np.float64).at[:, :4, 3].set(0.0)
    pv = preintegration.segment_table(table, s.reference_step_mm)
    stored = cached_native_segments.march(cache.tiles, pv, s)
    computed = cached_native_segments.march(
        cache.tiles.replace(seg_box=None), pv, s
    )
    for a, b in zip(stored, computed):
      np.testing.assert_array_equal(a, b)
