"""Gradient operator and joint histogram: closed forms and the JH geometry."""

import numpy as np
import pytest

from rlhf_tf.data.volume import make_volume
from rlhf_tf.render import gradient, histogram


def test_central_gradient_matches_numpy_gradient():
  rng = np.random.RandomState(0)
  hu = rng.randn(7, 5, 6).astype(np.float32) * 100
  spacing = (1.5, 0.5, 0.25)
  expected = np.stack(np.gradient(hu, *spacing), axis=-1)
  got = np.asarray(gradient.central_gradient(hu, spacing))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_gradient_of_linear_ramp_is_exact_in_physical_units():
  z, y, x = np.meshgrid(np.arange(6), np.arange(5), np.arange(4), indexing='ij')
  spacing = (2.0, 0.5, 1.0)
  hu = (3.0 * z * spacing[0] - 4.0 * x * spacing[2]).astype(np.float32)
  g = np.asarray(gradient.central_gradient(hu, spacing))
  np.testing.assert_allclose(g[..., 0], 3.0, atol=1e-5)
  np.testing.assert_allclose(g[..., 1], 0.0, atol=1e-5)
  np.testing.assert_allclose(g[..., 2], -4.0, atol=1e-5)
  mag = gradient.gradient_magnitude(hu, spacing)
  np.testing.assert_allclose(mag, 5.0, atol=1e-5)


@pytest.mark.parametrize('nz', [1, 2, 9, 40, 41])
def test_slabbed_magnitude_equals_whole_volume(nz):
  rng = np.random.RandomState(nz)
  hu = rng.randn(nz, 4, 5).astype(np.float32)
  spacing = (0.7, 1.1, 0.9)
  whole = np.linalg.norm(
      np.stack(np.gradient(hu, *spacing), -1)
      if nz > 1
      else np.stack(
          [np.zeros_like(hu)]
          + list(np.gradient(hu, *spacing[1:], axis=(1, 2))),
          -1,
      ),
      axis=-1,
  )
  got = gradient.gradient_magnitude(hu, spacing, slab=8)
  np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)


def _two_materials(n=24, inside=1500.0, outside=-500.0, width_mm=1.5):
  """Two half-spaces with a smooth (tanh) oblique planar boundary."""
  z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float64)] * 3, indexing='ij')
  # Oblique, so the boundary voxels sample intensities densely.
  s = (z + 0.37 * y + 0.21 * x) / np.sqrt(1 + 0.37**2 + 0.21**2)
  t = 0.5 * (1 - np.tanh((s - s.mean()) / width_mm))
  return make_volume(outside + (inside - outside) * t, (1.0, 1.0, 1.0))


def test_two_material_jh_has_two_peaks_and_a_boundary_arc():
  volume = _two_materials()
  bins = 32
  jh = histogram.joint_histogram(
      volume, bins=bins, hu_window=(-1000, 2000), grad_percentile=100.0
  )
  assert jh.image.shape == (bins, bins)
  assert jh.image.min() >= 0.0 and jh.image.max() == pytest.approx(1.0)
  assert jh.counts.sum() == volume.hu.size
  # The two materials: the two most populated intensity columns, each with
  # its mode at (near) zero gradient.
  cols = np.argsort(jh.counts.sum(axis=0))[-2:]
  expected_cols = sorted(int(jh.axes.hu_to_x(v) * bins) for v in (-500, 1500))
  assert sorted(cols.tolist()) == expected_cols
  assert jh.counts[:, cols].argmax(axis=0).max() <= 2
  # The boundary arc: between the materials, voxels have high gradient, the
  # highest near the middle intensity (|grad| of tanh peaks at its midpoint).
  lo, hi = expected_cols
  mean_row = []
  for col in range(lo + 2, hi - 1):
    column = jh.counts[:, col]
    assert column.sum() > 0, f'no boundary voxels at intensity bin {col}'
    mean_row.append((column * np.arange(bins)).sum() / column.sum())
  mean_row = np.asarray(mean_row)
  assert mean_row.min() > 4
  mid = len(mean_row) // 2
  assert mean_row[mid] > mean_row[0] and mean_row[mid] > mean_row[-1]


def test_axes_round_trip_and_clipping():
  volume = _two_materials(12)
  jh = histogram.joint_histogram(volume, bins=8, hu_window=(-100.0, 100.0))
  a = jh.axes
  assert a.x_to_hu(a.hu_to_x(37.0)) == pytest.approx(37.0)
  assert a.y_to_grad(a.grad_to_y(12.5)) == pytest.approx(12.5)
  # 8 bins of 25 HU: column 0 holds everything below -75 HU (clipped
  # included), the last column everything from 75 HU up.
  assert jh.counts[:, 0].sum() == int((volume.hu < -75).sum())
  assert jh.counts[:, -1].sum() == int((volume.hu >= 75).sum())


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(bins=1), 'bins'),
        (dict(bins=8, hu_window=(5.0, 5.0)), 'hu_window'),
        (dict(bins=8, grad_percentile=0.0), 'grad_percentile'),
    ],
)
def test_bad_histogram_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    histogram.joint_histogram(_two_materials(8), **kwargs)


def test_constant_volume_gives_single_bin():
  volume = make_volume(np.full((5, 5, 5), 40.0), (1.0, 1.0, 1.0))
  jh = histogram.joint_histogram(volume, bins=16, hu_window=(-1024, 3071))
  assert (jh.counts > 0).sum() == 1
  assert jh.axes.grad_max > 0


def test_volume_validation_names_the_problem():
  with pytest.raises(ValueError, match='non-finite'):
    make_volume(np.full((2, 2, 2), np.nan), (1, 1, 1))
  with pytest.raises(ValueError, match='spacing'):
    make_volume(np.zeros((2, 2, 2)), (1, 0, 1))
  with pytest.raises(ValueError, match='3D'):
    make_volume(np.zeros((2, 2)), (1, 1, 1))
  with pytest.raises(ValueError, match='label map shape'):
    make_volume(np.zeros((2, 2, 2)), (1, 1, 1), labels=np.zeros((2, 2, 3)))


def test_a_voxel_near_the_float32_limit_does_not_break_the_jh():
  """One corrupt voxel at 3e38 (its gradient overflows to inf): the JH is
  still finite, counts every voxel, and the gradient scale comes from the
  finite gradients, not from inf."""
  hu = np.full((8, 8, 8), -1000.0, np.float32)
  hu[:, :, 4:] = 1000.0  # a finite edge: gradient 1000 HU/mm
  hu[4, 4, 2] = 3e38
  volume = make_volume(hu, (1.0, 1.0, 1.0))
  for window in ((-1024.0, 3071.0), None):
    jh = histogram.joint_histogram(volume, bins=16, hu_window=window)
    assert jh.counts.sum() == hu.size
    assert np.all(np.isfinite(jh.image))
    assert 0 < jh.axes.grad_max < 1e6
