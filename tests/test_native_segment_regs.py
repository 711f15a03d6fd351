"""A pre-integrated segment's forward in registers (rlhf_tf.render.
native_segment_regs) against the scratch-array path it replaced in the
cached forward (native_segment_plan.split / split_shading /
surely_transparent, native_segment_optics.segment_optics): bit for bit
(hypothesis: random ends of both signs of slope, steep ones that split
at crests and peaks clipped to the table, partial segments, shading on and
off, float32 and float64 tables)."""

from hypothesis import given, settings
from hypothesis import strategies as st
import numba
import numpy as np

from rlhf_tf.render import native_segment_regs as regs
from rlhf_tf.render.native_segment_optics import segment_optics
from rlhf_tf.render.native_segment_plan import (
    occupancy,
    split,
    split_shading,
    surely_transparent,
)


@numba.njit
def _scratch_path(table, occ, bx, by, ends, half, min_den, optics):
  """(surely transparent, (lt, e_0, e_1, e_2, a)) by the scratch arrays."""
  points = np.zeros((5, 4))
  lengths = np.zeros(4)
  taus = np.zeros(2)
  clear = surely_transparent(occ, bx, by, ends, half)
  split(ends, half, bx, min_den, points, lengths, taus)
  if optics[0]:
    split_shading(ends, taus, points)
  return clear, segment_optics(table, bx, by, points, lengths, optics)


@numba.njit
def _register_path(table, occ, bx, by, ends, half, min_den, optics):
  x = [(ends[k, 0], ends[k, 1], ends[k, 2]) for k in range(3)]
  s = [(ends[k, 3], ends[k, 4]) for k in range(3)]
  clear = regs.surely_transparent(occ, bx, by, x[0], x[1], x[2], half)
  out = regs.segment(
      table, bx, by, x[0], x[1], x[2], half, min_den, (s[0], s[1], s[2]),
      optics,
  )  # fmt: skip
  return clear, out


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    slope=st.sampled_from([0.3, 4.0, 60.0]),
    shading=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    bins=st.sampled_from([(8, 8), (5, 11)]),
)
def test_registers_are_the_scratch_path_bit_for_bit(
    seed, slope, shading, dtype, bins
):
  by, bx = bins
  rng = np.random.default_rng(seed)
  table = rng.uniform(0.0, 2.0, (by * bx, 8)).astype(dtype)
  # Extinction 0 in about half the bins: some segments are clear.
  table[rng.uniform(size=by * bx) < 0.5, 4] = 0.0
  occ = occupancy(table, bx)
  min_den = float(np.finfo(dtype).eps) ** 2
  optics = (shading, 0.2, 0.7, 0.4)
  for _ in range(40):
    ends = np.zeros((3, 5))
    ends[:, 0] = rng.uniform(-1.0, bx + 1.0, 3).astype(dtype)
    ends[:, 1] = rng.uniform(0.0, by - 1.0, 3).astype(dtype)
    ends[:, 2] = (rng.normal(size=3) * slope).astype(dtype)
    ends[:, 3:] = rng.integers(0, 65536, (3, 2)) / 65535.0
    half = 0.5 * float(rng.choice([0.0, rng.uniform(0.0, 1.5), 1.5]))
    want = _scratch_path(table, occ, bx, by, ends, half, min_den, optics)
    got = _register_path(table, occ, bx, by, ends, half, min_den, optics)
    assert want[0] == got[0]
    np.testing.assert_array_equal(np.array(got[1]), np.array(want[1]))


@numba.njit
def _pair_and_each(table, bx, by, ends, half, min_den, optics):
  """(pair's results, each segment's own): two segments' ends [2, 3, 5]."""
  x = [[(e[k, 0], e[k, 1], e[k, 2]) for k in range(3)] for e in ends]
  s = [[(e[k, 3], e[k, 4]) for k in range(3)] for e in ends]
  shades = [(t[0], t[1], t[2]) for t in s]
  shading = optics[0]
  ready = [
      regs.prepare(table, bx, by, x[i][0], x[i][1], x[i][2], half[i], min_den,
                   shades[i], shading)  # fmt: skip
      for i in range(2)
  ]
  each = [
      regs.segment(table, bx, by, x[i][0], x[i][1], x[i][2], half[i],
                   min_den, shades[i], optics)  # fmt: skip
      for i in range(2)
  ]
  return regs.pair(ready[0], ready[1], optics), each[0] + each[1]


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    slope=st.sampled_from([0.3, 4.0, 60.0]),
    shading=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_a_pair_is_each_segment_bit_for_bit(seed, slope, shading, dtype):
  rng = np.random.default_rng(seed)
  table = rng.uniform(-0.2, 2.0, (64, 8)).astype(dtype)
  table[rng.uniform(size=64) < 0.3, 4] = 0.0
  min_den = float(np.finfo(dtype).eps) ** 2
  optics = (shading, 0.2, 0.7, 0.4)
  for _ in range(40):
    ends = np.zeros((2, 3, 5))
    ends[..., 0] = rng.uniform(-1.0, 9.0, (2, 3)).astype(dtype)
    ends[..., 1] = rng.uniform(0.0, 7.0, (2, 3)).astype(dtype)
    ends[..., 2] = (rng.normal(size=(2, 3)) * slope).astype(dtype)
    ends[..., 3:] = rng.integers(0, 65536, (2, 3, 2)) / 65535.0
    half = rng.choice([0.0, 0.3, 0.75, 4.0], 2)
    got, want = _pair_and_each(table, 8, 8, ends, half, min_den, optics)
    np.testing.assert_array_equal(np.array(got), np.array(want))
