"""Tests of the procedural CBCT head phantom (rlhf_tf.data.phantom)."""

import jax
import numpy as np
import pytest
from scipy import ndimage

from rlhf_tf.data import phantom
from rlhf_tf.data import phantom_shapes as shapes
from rlhf_tf.render.histogram import joint_histogram

SHAPE = (64, 64, 64)


@pytest.fixture(scope='module')
def vol():
  return phantom.make_head_phantom(jax.random.key(0), SHAPE)


@pytest.fixture(scope='module')
def clean():
  """No noise, no blur, no metal: every voxel is its label's material HU."""
  cfg = phantom.PhantomConfig(blur_mm=0.0, partial_volume=False)
  return phantom.make_head_phantom(
      jax.random.key(0), SHAPE, metal=False, noise=False, config=cfg
  )


def _label(name):
  return phantom.LABEL_VALUES[name]


def test_same_key_is_bitwise_identical_and_slab_independent(vol):
  again = phantom.make_head_phantom(jax.random.key(0), SHAPE)
  assert np.array_equal(vol.hu, again.hu)
  assert np.array_equal(vol.labels, again.labels)
  cfg = phantom.PhantomConfig(slab=5)
  other_slabs = phantom.make_head_phantom(jax.random.key(0), SHAPE, config=cfg)
  assert np.array_equal(vol.hu, other_slabs.hu)
  assert np.array_equal(vol.labels, other_slabs.labels)


def test_raw_and_typed_keys_agree():
  typed = phantom.make_head_phantom(jax.random.key(3), (16, 16, 16))
  raw = phantom.make_head_phantom(jax.random.key(3), (16, 16, 16))
  assert np.array_equal(typed.hu, raw.hu)


def test_different_keys_differ(vol):
  other = phantom.make_head_phantom(jax.random.key(1), SHAPE)
  assert not np.array_equal(vol.labels, other.labels)
  assert np.mean(vol.hu != other.hu) > 0.5  # Noise differs everywhere.
  a0, a1 = phantom.sample_anatomy(jax.random.key(0)), phantom.sample_anatomy(
      jax.random.key(1)
  )
  assert a0.z_occ != a1.z_occ and a0.lower != a1.lower


def test_geometry_matches_paper_fov(vol):
  assert vol.hu.dtype == np.float32 and vol.labels.dtype == np.int32
  np.testing.assert_allclose(vol.extent_mm, phantom.FOV_MM_ZYX)
  np.testing.assert_allclose(vol.spacing, np.asarray(phantom.FOV_MM_ZYX) / 64)
  assert vol.label_names == phantom.LABELS


def test_every_label_present(vol):
  counts = np.bincount(vol.labels.reshape(-1), minlength=len(phantom.LABELS))
  missing = [n for v, n in phantom.LABELS if counts[v] == 0]
  assert not missing, f'labels absent at 64^3: {missing}'


def test_clean_phantom_is_exactly_the_material_table(clean):
  lut = phantom.label_hu_table(phantom.PhantomConfig())
  np.testing.assert_array_equal(clean.hu, lut[clean.labels])
  assert not (clean.labels == _label('metal')).any()


@pytest.mark.parametrize('noise', [False, True])
def test_label_median_hu_in_documented_ranges(noise):
  # At 2.3 mm voxels the voxel-relative PSF floor would mix the 1.5 mm enamel
  # cap and cortical shell with their neighbours; this checks the material
  # HU, so it keeps only the physical 0.3 mm PSF.
  cfg = phantom.PhantomConfig(blur_min_voxels=0.0)
  v = phantom.make_head_phantom(
      jax.random.key(0), (48, 48, 48), noise=noise, config=cfg
  )
  for name, (lo, hi) in phantom.HU_RANGES.items():
    hu = v.hu[v.labels == _label(name)]
    assert hu.size, name
    assert lo <= np.median(hu) <= hi, (name, float(np.median(hu)))
  assert v.hu.min() >= -1024 and v.hu.max() <= 3071


def test_noise_level(clean):
  cfg = phantom.PhantomConfig(blur_mm=0.0, partial_volume=False)
  noisy = phantom.make_head_phantom(
      jax.random.key(0), SHAPE, metal=False, config=cfg
  )
  inside = clean.labels == _label('soft_tissue')
  std = float(np.std(noisy.hu[inside] - clean.hu[inside]))
  assert 0.8 * cfg.noise_sigma_hu < std < 1.2 * cfg.noise_sigma_hu


def _mandible_axial(v, anat, z_mm):
  k = int(round((z_mm - v.origin[2]) / v.spacing[0]))
  return phantom.structure_mask(v, 'mandible', anat)[k]


def test_mandible_is_u_shaped(clean):
  anat = phantom.sample_anatomy(jax.random.key(0))
  bone = _mandible_axial(clean, anat, 25.0)
  y = (
      clean.origin[1]
      + clean.spacing[1] * np.arange(clean.shape[1])
      - anat.shift[1]
  ) / anat.scale  # In the anatomy's frame, like yc.
  _, n_all = ndimage.label(bone)
  assert n_all == 1  # One bone crossing the midline at the chin...
  back = bone & (y[:, None] > anat.lower.yc + 5)
  _, n_back = ndimage.label(back)
  assert n_back == 2  # ... that splits into two limbs behind it.
  rows = np.nonzero(bone.any(1))[0]
  centroid_y = np.nonzero(bone)[0].mean()
  assert rows.min() < centroid_y < rows.max()
  mid = bone.shape[1] // 2
  assert not bone[rows.max(), mid - 2 : mid + 2].any()  # Open at the back.


def test_teeth_sit_in_the_jaws(clean):
  anat = phantom.sample_anatomy(jax.random.key(0))
  teeth = phantom.structure_mask(clean, 'teeth')
  jaw = phantom.structure_mask(clean, 'jaw', anat)
  bone = phantom.structure_mask(clean, 'bone')
  assert len(anat.teeth) >= 20 and teeth.sum() > 100
  comps, n = ndimage.label(teeth)
  touching = ndimage.binary_dilation(bone, iterations=1)
  for i in range(1, n + 1):
    assert (touching & (comps == i)).any(), f'tooth group {i} floats free'
  z = np.nonzero(teeth.any((1, 2)))[0]
  jaw_z = np.nonzero(jaw.any((1, 2)))[0]
  assert jaw_z.min() < z.min() and z.max() < jaw_z.max()
  # Roots inside the alveolar bone envelope, crowns out of it.
  zmm = clean.origin[2] + clean.spacing[0] * np.arange(clean.shape[0])
  ymm = clean.origin[1] + clean.spacing[1] * np.arange(clean.shape[1])
  xmm = clean.origin[0] + clean.spacing[2] * np.arange(clean.shape[2])
  envelope = shapes.region_slab(
      anat, shapes.PlaneMaps(anat, ymm, xmm), zmm, 'jaw'
  )
  from_occlusal = np.broadcast_to(
      np.abs(anat.local_z(zmm) - anat.z_occ)[:, None, None], teeth.shape
  )
  roots = teeth & (from_occlusal > 12.0)  # Beyond the tallest crown.
  crowns = teeth & (from_occlusal < 5.0)
  assert roots.sum() > 20 and crowns.sum() > 20
  assert envelope[roots].mean() > 0.9, envelope[roots].mean()
  assert envelope[crowns].mean() < 0.1, envelope[crowns].mean()


def test_structure_groups(clean):
  teeth = phantom.structure_mask(clean, 'teeth')
  expect = np.isin(
      clean.labels, [_label('enamel'), _label('dentin'), _label('pulp')]
  )
  assert np.array_equal(teeth, expect)
  assert np.array_equal(
      phantom.structure_mask(clean, 'bone'),
      np.isin(
          clean.labels, [_label('cancellous_bone'), _label('cortical_bone')]
      ),
  )
  with pytest.raises(KeyError):
    phantom.structure_mask(clean, 'spleen')
  with pytest.raises(ValueError):
    phantom.structure_mask(clean, 'mandible')


def test_tiny_volume():
  v = phantom.make_head_phantom(jax.random.key(0), (8, 8, 8))
  assert v.shape == (8, 8, 8) and np.isfinite(v.hu).all()
  assert (v.labels == _label('soft_tissue')).any()


def test_anisotropic_spacing_keeps_the_anatomy_in_place(clean):
  cfg = phantom.PhantomConfig(blur_mm=0.0, partial_volume=False)
  v = phantom.make_head_phantom(
      jax.random.key(0),
      (40, 50, 30),
      spacing=(109.4 / 40, 84.2 / 50, 109.4 / 30),
      metal=False,
      noise=False,
      config=cfg,
  )
  np.testing.assert_allclose(v.extent_mm, phantom.FOV_MM_ZYX)

  def centroid_mm(vol, name):
    idx = np.stack(np.nonzero(vol.labels == _label(name)), 1).mean(0)
    return np.asarray(vol.origin)[::-1] + idx * np.asarray(vol.spacing)

  for name in ('enamel', 'cortical_bone', 'airway'):
    np.testing.assert_allclose(
        centroid_mm(v, name), centroid_mm(clean, name), atol=3.0, err_msg=name
    )


def test_metal_off_has_no_metal_and_no_streaks(clean):
  cfg = phantom.PhantomConfig(blur_mm=0.0, partial_volume=False)
  with_metal = phantom.make_head_phantom(
      jax.random.key(0), SHAPE, metal=True, noise=False, config=cfg
  )
  metal = with_metal.labels == _label('metal')
  assert metal.any() and not (clean.labels == _label('metal')).any()
  # Same anatomy: only filled crown voxels change label.
  assert np.array_equal(with_metal.labels[~metal], clean.labels[~metal])
  # Streaks: HU away from the metal differs from the material table, only
  # in the slices that hold metal (and not in the clean volume at all).
  far = ~ndimage.binary_dilation(metal, iterations=3)
  diff = np.abs(with_metal.hu - clean.hu) * far
  metal_slices = np.nonzero(metal.any((1, 2)))[0]
  assert diff[metal_slices].max() > 200
  # Their Gaussian tail along z is below 1e-3 beyond ~3.7 slices.
  assert diff[: metal_slices.min() - 5].max() == 0


def test_joint_histogram_has_separated_tissue_peaks():
  # Material peaks, as above without the voxel-relative PSF floor.
  vol = phantom.make_head_phantom(
      jax.random.key(0),
      SHAPE,
      config=phantom.PhantomConfig(blur_min_voxels=0.0),
  )
  jh = joint_histogram(vol, bins=64, hu_window=(-1024, 3071))
  marginal = jh.counts.sum(0).astype(float)  # Over gradient: per HU bin.
  peaks = []
  for lo, hi in ((-100, 150), (250, 600), (1200, 1700), (2500, 3000)):
    a, b = (int(jh.axes.hu_to_x(v) * 64) for v in (lo, hi))
    peaks.append(a + int(np.argmax(marginal[a : b + 1])))
  assert peaks == sorted(peaks)  # soft < cancellous < cortical < enamel
  for p, q in zip(peaks, peaks[1:]):
    valley = marginal[p : q + 1].min()
    assert valley < 0.2 * min(marginal[p], marginal[q]), (p, q)


def test_default_psf_makes_boundary_arcs_in_the_jh(vol):
  """Edges spread over ~2 voxels: voxels between soft tissue and cortical
  bone intensities carry high gradients (the arc), pure materials low ones."""
  jh = joint_histogram(vol, bins=64, hu_window=(-1024, 3071))
  rows = np.arange(64)[:, None]

  def mean_row(lo, hi):
    a, b = (int(jh.axes.hu_to_x(v) * 64) for v in (lo, hi))
    c = jh.counts[:, a : b + 1]
    return float((c * rows).sum() / c.sum())

  assert mean_row(800, 1000) > 2 * mean_row(0, 80)
  # Sharp (point-sampled) edges would leave the HU between cancellous and
  # cortical bone almost empty (~3e-5 of the voxels at 64^3).
  hu = np.asarray(vol.hu)
  assert ((hu > 700) & (hu < 1100)).mean() > 0.01
