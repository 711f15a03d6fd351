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
from rlhf_tf.render import empty_space, raymarch, render_settings, sampling

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
  """Smooth HU with an air margin (a head in its box)."""
  hu = np.array(smooth_volume(SHAPE, seed=seed))
  hu[:2], hu[-2:], hu[:, :3] = -1000.0, -1000.0, -1000.0
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


def test_block_ranges_equal_a_brute_force_loop():
  """Per-block HU min / max and max |g| over the block grown by its halo
  (voxels outside the volume ignored), against a plain loop."""
  hu = np.asarray(_volume(4))
  packed = np.asarray(sampling.packed_volume(jnp.asarray(hu), SPACING))
  ranges = empty_space.block_ranges(jnp.asarray(packed), SPACING, 1.1, 4)
  gmag = np.linalg.norm(packed[..., 1:], axis=-1)
  for bz, by, bx in np.ndindex(ranges.hu_min.shape):
    box = tuple(
        slice(max(b * 4 - h, 0), b * 4 + 4 + h)
        for b, h in zip((bz, by, bx), ranges.halo)
    )
    assert float(ranges.hu_min[bz, by, bx]) == hu[box].min()
    assert float(ranges.hu_max[bz, by, bx]) == hu[box].max()
    np.testing.assert_allclose(
        ranges.grad_max[bz, by, bx], gmag[box].max(), rtol=1e-6
    )
