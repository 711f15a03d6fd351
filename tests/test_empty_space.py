"""Empty-space skipping and early ray termination of the direct renderer
change no pixel by more than their stated bounds (rlhf_tf.render.empty_space,
raymarch._render). Tiny volumes; hypothesis draws volumes, TFs and bounds.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax.numpy as jnp
import numpy as np
import pytest
from render_testing import AXES, smooth_volume, SPACING

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import (
    direct_kernels,
    empty_space,
    raymarch,
    render_settings,
    sampling,
)

SHAPE = (10, 12, 9)
BASE = render_settings.RenderSettings(
    step_mm=1.1,
    tile_rays=16,
    march_chunk=4,
    background=(0.1, 0.2, 0.3),
)
EXACT = BASE.replace(skip_empty_space=False, termination_transmittance=0.0)


def _sparse_table(seed, bins=8, tiny=1e-7, strong=0.9):
  """A TF whose bins are mostly 0 or tiny (below any skip threshold), a
  few strongly opaque: skipping and termination both have work to do."""
  rng = np.random.default_rng(seed)
  t = rng.uniform(0.05, 1.0, (bins, bins, 4))
  kind = rng.integers(0, 3, (bins, bins))
  t[..., 3] = np.where(kind == 0, 0.0, np.where(kind == 1, tiny, strong))
  return jnp.asarray(t, jnp.float32)


def _camera(size=8):
  return camera_lib.orbit_camera(
      SHAPE,
      SPACING,
      25.0,
      20.0,
      width=size,
      height=size,
      projection='orthographic',
  )


def _volume(seed):
  """Smooth HU with an air margin (a head in its box, padded with -1024 HU
  as scanners do). Not -1000: that is AXES.hu_min, where classification
  jumps, so a margin there made images flip with the last bit of the
  trilinear weights (0.05-0.09 in 21 pixels for +1e-4 HU; at -1024 1e-2 HU
  moves no pixel by 1e-4)."""
  hu = np.array(smooth_volume(SHAPE, seed=seed))
  hu[:2], hu[-2:], hu[:, :3] = -1024.0, -1024.0, -1024.0
  return jnp.asarray(hu)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    tolerance=st.sampled_from([1e-3, 3e-2]),
    termination=st.sampled_from([1e-3, 5e-2]),
)
def test_skipping_and_termination_stay_within_their_bounds(
    seed, tolerance, termination
):
  hu = _volume(seed % 7)
  table = _sparse_table(seed)
  table = table.at[..., 3].set(
      jnp.where(table[..., 3] == 1e-7, 0.5 * tolerance / 50, table[..., 3])
  )
  cam = _camera()
  fast = BASE.replace(
      empty_space_tolerance=tolerance, termination_transmittance=termination
  )
  exact = raymarch.render(hu, None, SPACING, AXES, table, cam, EXACT)
  image = raymarch.render(hu, None, SPACING, AXES, table, cam, fast)
  bound = 2.0005 * tolerance + termination
  assert float(jnp.abs(image - exact).max()) <= bound
  # Termination alone: within its own bound.
  only_ert = raymarch.render(
      hu,
      None,
      SPACING,
      AXES,
      table,
      cam,
      EXACT.replace(termination_transmittance=termination),
  )
  assert float(jnp.abs(only_ert - exact).max()) <= termination


def test_defaults_change_no_pixel_by_more_than_2e_3():
  hu = _volume(3)
  cam = _camera(12)
  for seed in range(3):
    table = _sparse_table(seed)
    exact = raymarch.render(hu, None, SPACING, AXES, table, cam, EXACT)
    image = raymarch.render(hu, None, SPACING, AXES, table, cam, BASE)
    assert float(exact[..., 3].max()) > 0.5  # Something opaque is seen.
    np.testing.assert_allclose(image, exact, atol=2e-3)


@pytest.mark.parametrize('native', [True, False])
def test_air_at_exactly_hu_min_is_no_knife_edge(native):
  """Air padded with exactly AXES.hu_min (data clipped to the window):
  +-1e-4 HU on the whole volume, about the last bit of the trilinear
  weights there, moves no pixel of the pre-integrated image by 1e-4
  (preintegration.EDGE_X; with a strict edge the XLA march moved 21 of
  144 pixels by up to 0.086)."""
  hu = np.array(_volume(2))
  hu[hu == -1024.0] = AXES.hu_min
  cam = _camera(12)
  table = _sparse_table(6)
  s = EXACT.replace(preintegrate=True, native_march=native)
  base = raymarch.render(jnp.asarray(hu), None, SPACING, AXES, table, cam, s)
  assert float(base[..., 3].max()) > 0.5
  for eps in (1e-4, -1e-4):
    image = raymarch.render(
        jnp.asarray(hu + eps), None, SPACING, AXES, table, cam, s
    )
    np.testing.assert_allclose(image, base, atol=1e-4)


@pytest.mark.parametrize('native', [True, False])
def test_defaults_hold_with_pre_integration(native):
  """Pre-integration's Hermite midpoints may leave the ends' HU range; the
  widened block ranges keep the bound (the XLA march's tiles and, on CPU,
  the native march's rays)."""
  hu = _volume(2)
  cam = _camera(12)
  for seed in range(2):
    table = _sparse_table(seed + 5)
    pre = BASE.replace(preintegrate=True, native_march=native)
    exact = raymarch.render(
        hu,
        None,
        SPACING,
        AXES,
        table,
        cam,
        pre.replace(skip_empty_space=False, termination_transmittance=0.0),
    )
    image = raymarch.render(hu, None, SPACING, AXES, table, cam, pre)
    assert float(exact[..., 3].max()) > 0.5
    np.testing.assert_allclose(image, exact, atol=2e-3)


def test_zero_tolerance_skips_exactly():
  """Blocks whose bins are all exactly 0 are skipped at no error."""
  hu = _volume(1)
  table = _sparse_table(1)
  table = table.at[..., 3].set(jnp.where(table[..., 3] < 0.5, 0.0, 0.3))
  cam = _camera()
  exact = raymarch.render(hu, None, SPACING, AXES, table, cam, EXACT)
  image = raymarch.render(
      hu,
      None,
      SPACING,
      AXES,
      table,
      cam,
      EXACT.replace(skip_empty_space=True, empty_space_tolerance=0.0),
  )
  np.testing.assert_allclose(image, exact, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), step=st.sampled_from([0.5, 1.1, 2.3]))
def test_every_visible_sample_lies_in_an_occupied_block(seed, step):
  """Soundness of the block ranges: a point whose trilinear (HU, |g|) looks
  up a bin above the threshold, or any point within one step of it, is in
  an occupied block."""
  rng = np.random.default_rng(seed)
  shape = (24, 24, 24)  # Tissue in the middle, 8 voxels of air around.
  hu = np.full(shape, -1000.0, np.float32)
  hu[8:16, 8:16, 8:16] = smooth_volume((8, 8, 8), seed=seed % 5)
  packed = sampling.packed_volume(jnp.asarray(hu), SPACING)
  table = _sparse_table(seed, tiny=1e-4)
  table = table.at[:, :4, 3].multiply(1e-3)  # Air and low HU: below it.
  threshold = 1e-3
  ranges = empty_space.block_ranges(packed, SPACING, step, block=4)
  occ = empty_space.occupancy(ranges, AXES, table[..., 3], threshold)
  coords = rng.uniform(6.0, 18.0, (4000, 3))
  val = sampling.trilinear(packed.reshape(-1, 4), shape, jnp.asarray(coords))
  x = AXES.hu_to_x(val[:, 0])
  y = AXES.grad_to_y(jnp.linalg.norm(val[:, 1:], axis=-1))
  i0, fx, fy = sampling.tf_coords(x, y, 8, 8)
  corners = sampling.corner_table(table)
  alpha = sampling.bilinear_lookup(corners, i0, fx, fy)[:, 3]
  visible = np.asarray(alpha > threshold)
  assert visible.any()
  # Points up to one step away (in mm) see the same sample's segment.
  shift = rng.normal(size=coords.shape)
  shift *= rng.uniform(0, step, (len(coords), 1)) / np.linalg.norm(
      shift, axis=1, keepdims=True
  )
  for c in (coords, coords + shift / np.asarray(SPACING)):
    hit = np.asarray(empty_space.occupied_at(occ, 4, jnp.asarray(c)))
    assert hit[visible].all()
  assert not np.asarray(occ).all()  # Something is skippable.


def test_block_ranges_are_checked_against_the_volume_and_step():
  hu = _volume(0)
  packed = sampling.packed_volume(hu, SPACING)
  ranges = empty_space.block_ranges(packed, SPACING, 1.1)
  try:
    raymarch.render(
        None,
        None,
        SPACING,
        AXES,
        _sparse_table(0),
        _camera(),
        BASE.replace(step_mm=3.0),
        packed=packed,
        ranges=ranges,
    )
  except ValueError as e:
    assert 'halo' in str(e)
  else:
    raise AssertionError('ranges for a smaller step were accepted')


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), step=st.sampled_from([0.4, 1.1, 2.3]))
def test_a_group_with_a_sample_in_an_occupied_block_is_tested_occupied(
    seed, step
):
  """The per-ray group test (raymarch._render): a group of
  empty_space.group_samples samples whose dilated occupancy at its centre
  is False has no sample (segment midpoint) in an occupied block."""
  rng = np.random.default_rng(seed)
  nb = (3, 4, 5)
  occ = jnp.asarray(rng.uniform(size=nb) < 0.08)
  block = 4
  shape = tuple(n * block for n in nb)
  group = empty_space.group_samples(SPACING, step, block)
  assert group >= 1
  test = empty_space.dilate(occ) if group > 1 else occ
  d = rng.normal(size=(64, 3))
  d /= np.linalg.norm(d, axis=1, keepdims=True)
  # Groups of samples along random rays through the volume (voxel coords).
  centre = rng.uniform(-2, np.asarray(shape) + 2, (64, 1, 3))
  offset = (np.arange(group) + 0.5 - 0.5 * group) * step
  samples = centre + offset[None, :, None] * d[:, None, :] / np.asarray(SPACING)
  hit = np.asarray(empty_space.occupied_at(occ, block, jnp.asarray(samples)))
  tested = np.asarray(
      empty_space.occupied_at(test, block, jnp.asarray(centre[:, 0]))
  )
  assert not (hit.any(axis=1) & ~tested).any()


def test_next_occupied_by_hand():
  occ = jnp.asarray([[False, True, False, False, True], [False] * 5])
  np.testing.assert_array_equal(
      empty_space.next_occupied(occ), [[1, 1, 4, 4, 4], [5, 5, 5, 5, 5]]
  )


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    bins=st.sampled_from([(8, 8), (5, 12), (16, 3)]),
    density=st.sampled_from([0.0, 0.02, 0.2, 1.0]),
)
def test_occupancy_equals_a_brute_force_loop(seed, bins, density):
  """A block is occupied iff some bin of its JH rectangle (its bins and
  their right / upper neighbours: every gradient row up to its max |g|'s,
  the columns between its HU min's and max's) has alpha above the
  threshold, against a plain loop over random sparse TFs and ranges."""
  rng = np.random.default_rng(seed)
  by, bx = bins
  alpha = np.where(rng.random(bins) < density, rng.uniform(0, 1, bins), 0.0)
  hu = rng.uniform(-1200.0, 2200.0, (2, 3, 4, 5))
  ranges = empty_space.BlockRanges(
      hu_min=jnp.asarray(hu.min(0), jnp.float32),
      hu_max=jnp.asarray(hu.max(0), jnp.float32),
      grad_max=jnp.asarray(rng.uniform(0.0, 1500.0, (3, 4, 5)), jnp.float32),
  )
  threshold = 0.3
  occ = np.asarray(
      empty_space.occupancy(ranges, AXES, jnp.asarray(alpha), threshold)
  )

  def lower_bin(v, n):
    return np.clip(np.floor(np.clip(v * n - 0.5, 0.0, n - 1.0)), 0, n - 2)

  i0 = lower_bin(np.asarray(AXES.hu_to_x(ranges.hu_min)), bx).astype(int)
  i1 = lower_bin(np.asarray(AXES.hu_to_x(ranges.hu_max)), bx).astype(int)
  j1 = lower_bin(np.asarray(AXES.grad_to_y(ranges.grad_max)), by).astype(int)
  for b in np.ndindex(occ.shape):
    seen = alpha[: j1[b] + 2, i0[b] : i1[b] + 2] > threshold
    assert occ[b] == seen.any(), b


def test_block_ranges_equal_a_brute_force_loop():
  """Per-block HU min / max and max |g| over the block grown by its halo
  (voxels outside the volume ignored), against a plain loop."""
  hu = np.asarray(_volume(4))
  packed = np.asarray(sampling.packed_volume(jnp.asarray(hu), SPACING))
  ranges = empty_space.block_ranges(jnp.asarray(packed), SPACING, 1.1, 4)
  gmag = np.linalg.norm(packed[..., 1:], axis=-1)
  for bz, by, bx in np.ndindex(ranges.hu_min.shape):
    box = tuple(
        slice(max(b * 4 - lo, 0), b * 4 + 4 + hi)
        for b, (lo, hi) in zip((bz, by, bx), ranges.halo)
    )
    assert float(ranges.hu_min[bz, by, bx]) == hu[box].min()
    assert float(ranges.hu_max[bz, by, bx]) == hu[box].max()
    np.testing.assert_allclose(
        ranges.grad_max[bz, by, bx], gmag[box].max(), rtol=1e-6
    )


def _halo_reach(shape, spacing, step, seed, rays=300):
  """[3, 2] largest (below, above) voxels past its block's faces that any
  point of a segment reads (trilinear corners), over random rays: segments,
  their block (that of the midpoint) and corners exactly as the native
  marches compute them (direct_kernels._ray, _segment, _block, _axis)."""
  rng = np.random.default_rng(seed)
  fp = np.zeros(direct_kernels.NUM_FLOAT)
  lo, hi = camera_lib.volume_box(shape, spacing)
  fp[direct_kernels.LO : direct_kernels.LO + 3] = lo
  fp[direct_kernels.HI : direct_kernels.HI + 3] = hi
  fp[direct_kernels.SPACING : direct_kernels.SPACING + 3] = spacing
  fp[direct_kernels.STEP] = step
  nb = np.asarray([-(-n // 4) for n in shape], np.int64)
  frame = np.empty(9)
  reach = np.full((3, 2), -np.inf)
  for _ in range(rays):
    target = rng.uniform(lo, hi)
    d = rng.normal(size=3)
    if rng.uniform() < 0.5:  # Near an axis: segments reach furthest.
      d *= np.where(np.arange(3) == rng.integers(3), 1.0, 1e-3)
    d /= np.linalg.norm(d)
    o = target - d * (np.linalg.norm(hi - lo) + rng.uniform(0, 5))
    base_t, start, end = direct_kernels._ray(o, d, fp, rng.uniform(), frame)
    i = 0
    while i * step < end:
      _, mid = direct_kernels._segment(i, start, end, step)
      t = base_t + mid
      b = direct_kernels._block(
          *(frame[a] + t * frame[3 + a] for a in range(3)), nb, 0.25
      )
      front = min(max(i * step, start), end)
      back = min(max((i + 1) * step, start), end)
      for p in (front, back, *rng.uniform(front, back, 4)):
        for a in range(3):
          c = frame[a] + (base_t + p) * frame[3 + a]
          k, _ = direct_kernels._axis(c, shape[a])
          top = k + 1 if shape[a] > 1 else k
          reach[a, 0] = max(reach[a, 0], 4 * b[a] - k)
          reach[a, 1] = max(reach[a, 1], top - (4 * b[a] + 3))
      i += 1
  return reach


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    step=st.floats(0.2, 3.0),
    spacing=st.tuples(*[st.sampled_from([0.5, 0.9, 1.0, 1.5])] * 3),
    shape=st.tuples(*[st.integers(5, 13)] * 3),
)
def test_every_voxel_a_segment_reads_lies_in_its_block_and_halo(
    seed, step, spacing, shape
):
  """halo_voxels covers every trilinear corner of every point (ends,
  midpoint, points between) of every segment, on both sides, for the block
  the march assigns the segment to (its midpoint's)."""
  reach = _halo_reach(shape, spacing, step, seed, rays=40)
  halo = np.asarray(empty_space.halo_voxels(spacing, step))
  assert (reach <= halo).all(), (reach, halo)


@pytest.mark.parametrize('step', [0.9, 1.5])
def test_the_halo_is_tight(step):
  """Some segment reads the last voxel of the halo on each side of each
  axis: a halo one voxel smaller would miss a voxel a segment reads."""
  spacing = (1.0, 0.9, 1.5)
  reach = _halo_reach((9, 10, 11), spacing, step, 0)
  np.testing.assert_array_equal(reach, empty_space.halo_voxels(spacing, step))
