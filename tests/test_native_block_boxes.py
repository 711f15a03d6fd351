"""Block boxes of the pre-integrated cache (rlhf_tf.render.
native_block_boxes): every bin a block's pieces read lies in its box
(hypothesis: random fields, steep slopes, partial segments), and skipping
the blocks a TF leaves clear changes no pixel, no transmittance and no
segment count, bit for bit."""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax.numpy as jnp
import numpy as np
from render_testing import random_table, small_cache

from rlhf_tf.render import (
    cached_native_segments,
    native_block_boxes,
    native_segment_plan,
    preintegration,
    raymarch,
)

BLOCK = native_block_boxes.BLOCK
EXACT = raymarch.RenderSettings(
    step_mm=1.1,
    background=(0.1, 0.2, 0.3),
    termination_transmittance=0.0,
    cache_tile_rays=24,
    preintegrate=True,
)


def _read_bins(points, lengths, bins_x, bins_y):
  """(columns, gradient rows) a split segment's pieces read
  (native_segment_plan.transparent's bins): None for an empty segment."""
  cols = [min(max(int(points[k, 0]), 0), bins_x - 1) for k in range(5)]
  rows = []
  for k in range(4):
    if lengths[k] == 0.0:
      continue
    vbar = 0.5 * (points[k, 1] + points[k + 1, 1])
    j = min(max(int(vbar), 0), bins_y - 2)
    rows += [j, j + 1]
  if not rows:
    return None
  return (min(cols), max(cols)), (min(rows), max(rows))


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    slope=st.sampled_from([0.5, 5.0, 80.0]),
    bins=st.sampled_from([(8, 8), (5, 11), (256, 256)]),
    step=st.floats(0.3, 2.0),
)
def test_every_bin_a_block_reads_is_in_its_box(seed, slope, bins, step):
  by, bx = bins
  rng = np.random.default_rng(seed)
  tile, rows = 3, 4 * BLOCK + 2 * 32
  shape = (rows, tile)
  u = rng.uniform(0.0, bx, shape).astype(np.float32)
  u_mid = rng.uniform(0.0, bx, shape).astype(np.float32)
  v = rng.uniform(0.0, by - 1.0, shape).astype(np.float32)
  v_mid = rng.uniform(0.0, by - 1.0, shape).astype(np.float32)
  du = (rng.normal(size=shape) * slope).astype(np.float32)
  du_mid = (rng.normal(size=shape) * slope).astype(np.float32)
  first_row = np.array([0, 2 * BLOCK + 32])
  num_steps = np.array([2 * BLOCK + 5, 2 * BLOCK - 3])
  fields = (u, v, du, u_mid, v_mid, du_mid)
  box = native_block_boxes.block_boxes(
      fields, first_row, num_steps, step, (by, bx)
  )
  ends = np.zeros((3, 5))
  points = np.zeros((5, 4))
  lengths = np.zeros(4)
  taus = np.zeros(2)
  step32 = np.float32(step)
  checked = 0
  for t in range(2):
    for m in range(tile):
      lo = np.float32(rng.uniform(0.0, step))
      hi = lo + np.float32(rng.uniform(0.5, 1.0) * num_steps[t] * step)
      for i in range(num_steps[t]):
        fi = np.float32(i) * step32
        seg = min(max(hi - fi, 0), step32) - min(max(lo - fi, 0), step32)
        row = first_row[t] + i
        for k, r, (fu, fv, fd) in (
            (0, row, (u, v, du)),
            (1, row, (u_mid, v_mid, du_mid)),
            (2, row + 1, (u, v, du)),
        ):
          ends[k, :3] = fu[r, m], fv[r, m], fd[r, m]
        native_segment_plan.split(
            ends, 0.5 * seg, bx, np.finfo(np.float32).eps ** 2, points,
            lengths, taus,
        )  # fmt: skip
        read = _read_bins(points, lengths, bx, by)
        if read is None:
          continue
        (c0, c1), (r0, r1) = read
        b = box[row // BLOCK, m]
        assert b[0] <= c0 and c1 < b[1], (read, b)
        assert b[2] <= r0 and r1 < b[3], (read, b)
        checked += 1
  assert checked > 0


_cache = small_cache


def _clear_blocks(cache, pv):
  """How many stored boxes the table leaves clear (of blocks walked)."""
  occ = native_segment_plan.occupancy(np.asarray(pv).reshape(-1, 8), 8)
  box = np.asarray(cache.tiles.box).astype(np.int64)
  first = np.asarray(cache.tiles.first_chunk) * 32 // BLOCK
  steps = np.asarray(cache.tiles.num_steps)
  clear = 0
  for t in range(first.size):
    for k in range(first[t], first[t] + -(-int(steps[t]) // BLOCK)):
      c0, c1, r0, r1 = box[k].T
      count = occ[r1, c1] - occ[r0, c1] - occ[r1, c0] + occ[r0, c0]
      clear += int(np.sum(count == 0))
  return clear


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    azimuth=st.floats(0.0, 360.0),
    shading=st.booleans(),
    threshold=st.sampled_from([0.0, 1e-3, 0.3]),
    clear_columns=st.integers(3, 6),
)
def test_skipping_clear_blocks_changes_nothing(
    seed, azimuth, shading, threshold, clear_columns
):
  s = EXACT.replace(shading=shading, termination_transmittance=threshold)
  cache = _cache(s, seed % 5, azimuth)
  assert cache.tiles.box is not None
  table = random_table(seed=seed).at[:, :clear_columns, 3].set(0.0)
  pv = preintegration.segment_table(table, s.reference_step_mm)
  with_boxes = cached_native_segments.march(cache.tiles, pv, s)
  without = cached_native_segments.march(cache.tiles.replace(box=None), pv, s)
  for a, b in zip(with_boxes, without):
    np.testing.assert_array_equal(a, b)
  if clear_columns >= 5:
    assert _clear_blocks(cache, pv) > 0  # Some blocks were skipped.
  img = cached_native_segments.cached_image(cache, table, s)
  assert float(jnp.abs(img[..., :3]).max()) > 0.0
