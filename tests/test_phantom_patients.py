"""Phantoms that differ like patients (phantom.patient_config) and the
paper's 547 x 421 x 547 grid within a bounded memory."""

import dataclasses
import tracemalloc

import jax
import numpy as np
import pytest

from rlhf_tf.data import phantom, phantom_anatomy
from rlhf_tf.render.histogram import joint_histogram

SEEDS = range(6)


def _patient(seed, shape=(40, 40, 40), **kwargs):
  key = jax.random.key(seed)
  config = phantom.patient_config(key)
  return config, phantom.make_head_phantom(key, shape, config=config, **kwargs)


def test_patient_is_a_function_of_the_key():
  a = phantom.patient_config(jax.random.key(3))
  assert a == phantom.patient_config(jax.random.key(3))
  assert a == phantom.patient_config(jax.random.key(3))
  assert a != phantom.patient_config(jax.random.key(4))


def test_patients_span_the_documented_ranges():
  configs = [phantom.patient_config(jax.random.key(s)) for s in range(40)]
  for name, (lo, hi) in phantom.PATIENT_RANGES.items():
    values = np.ravel([getattr(c, name) for c in configs])
    assert lo <= values.min() and values.max() <= hi, name
    # Spread over most of the range, not stuck at one value.
    assert values.max() - values.min() > 0.6 * (hi - lo), name
  fillings = [c.num_fillings for c in configs]
  assert min(fillings) <= 1 and max(fillings) >= phantom.MAX_FILLINGS - 1
  molars = [len(c.third_molars) for c in configs]
  assert min(molars) == 0 and max(molars) >= 2


def test_dentition_follows_the_patient():
  """Missing teeth, extra third molars and the filling count per patient."""
  for seed in SEEDS:
    key = jax.random.key(seed)
    config = phantom.patient_config(key)
    anat = phantom.sample_anatomy(key, config)
    third = sorted(
        ('lower' if t.up > 0 else 'upper') + ('_left' if t.s > 0 else '_right')
        for t in anat.teeth
        if t.kind == 7
    )
    # An extra molar may itself be missing, never present unasked.
    assert set(third) <= set(config.third_molars)
    regular = sum(t.kind < 7 for t in anat.teeth)
    assert regular <= 28
    fillable = sum(t.kind in phantom_anatomy.FILLABLE for t in anat.teeth)
    assert sum(t.filled for t in anat.teeth) == min(
        config.num_fillings, fillable
    )
  counts = {
      len(
          phantom.sample_anatomy(
              jax.random.key(s), phantom.patient_config(jax.random.key(s))
          ).teeth
      )
      for s in range(12)
  }
  assert min(counts) < 28 < max(counts)  # Missing and extra teeth.


def test_metal_voxels_grow_with_the_number_of_fillings():
  metal = phantom.LABEL_VALUES['metal']
  by_count = {}
  for seed in range(12):
    config, vol = _patient(seed, noise=False)
    by_count.setdefault(config.num_fillings, []).append(
        int((vol.labels == metal).sum())
    )
  if 0 in by_count:
    assert max(by_count[0]) == 0
  few = [v for n, vs in by_count.items() if 1 <= n <= 3 for v in vs]
  many = [v for n, vs in by_count.items() if n >= 6 for v in vs]
  assert few and many and np.mean(many) > np.mean(few)


def test_field_of_view_and_voxel_size_follow_the_patient():
  config, vol = _patient(1, shape=(30, 20, 30))
  expected = np.asarray(phantom.FOV_MM_ZYX) * np.asarray(config.fov_scale)
  np.testing.assert_allclose(vol.extent_mm, expected)
  np.testing.assert_allclose(vol.spacing, expected / (30, 20, 30))
  assert config.fov_scale != (1.0, 1.0, 1.0)
  # An explicit voxel size wins: the FOV is then shape * spacing.
  _, fixed = _patient(1, shape=(30, 20, 30), spacing=0.2)
  np.testing.assert_allclose(fixed.extent_mm, (6.0, 4.0, 6.0))


def test_noise_level_follows_the_patient():
  quiet, loud = sorted(
      (phantom.patient_config(jax.random.key(s)) for s in range(8)),
      key=lambda c: c.noise_sigma_hu,
  )[::7]
  assert loud.noise_sigma_hu > 1.5 * quiet.noise_sigma_hu
  stds = []
  for config in (quiet, loud):
    c = dataclasses.replace(
        config, blur_mm=0.0, partial_volume=False, fov_scale=(1.0, 1.0, 1.0)
    )
    key = jax.random.key(0)
    noisy = phantom.make_head_phantom(key, (24, 32, 32), metal=False, config=c)
    clean = phantom.make_head_phantom(
        key, (24, 32, 32), metal=False, noise=False, config=c
    )
    soft = clean.labels == phantom.LABEL_VALUES['soft_tissue']
    stds.append(float(np.std(noisy.hu[soft] - clean.hu[soft])))
  np.testing.assert_allclose(
      stds, (quiet.noise_sigma_hu, loud.noise_sigma_hu), rtol=0.15
  )


def _jh(vol):
  h = joint_histogram(vol, bins=48, hu_window=(-1024.0, 3071.0))
  counts = np.asarray(h.counts, np.float64)
  return counts / counts.sum()


def test_the_jh_changes_with_the_patient_more_than_with_the_jitter():
  """Total-variation distance between the JHs of seeds: patients differ far
  more than reference heads that differ by jitter and noise only."""

  def distances(patient):
    jhs = []
    for seed in range(4):
      key = jax.random.key(seed)
      config = phantom.patient_config(key) if patient else None
      jhs.append(
          _jh(phantom.make_head_phantom(key, (40, 40, 40), config=config))
      )
    return [
        0.5 * np.abs(jhs[i] - jhs[j]).sum()
        for i in range(4)
        for j in range(i + 1, 4)
    ]

  reference, patients = distances(False), distances(True)
  assert np.mean(patients) > 1.5 * np.mean(reference)


def test_noise_and_blur_alone_move_the_jh():
  key = jax.random.key(0)
  base = phantom.PhantomConfig()
  jhs = [
      _jh(phantom.make_head_phantom(key, (32, 32, 32), config=c))
      for c in (
          base,
          dataclasses.replace(base, noise_sigma_hu=70.0, blur_mm=0.5),
      )
  ]
  assert 0.5 * np.abs(jhs[0] - jhs[1]).sum() > 0.05


@pytest.mark.parametrize('shape', [(24, 30, 20), (48, 30, 20), (48, 60, 40)])
def test_memory_is_two_arrays_plus_a_slab(shape):
  """Peak host memory ~ 8 bytes per voxel (HU + labels) + O(slab plane): the
  paper's 547 x 421 x 547 at 0.2 mm then needs ~1.0 GB + ~0.7 GB (slab 32),
  checked here on small grids at the same 0.2 mm (the bound is linear)."""
  key = jax.random.key(0)
  config = phantom.patient_config(key, phantom.PhantomConfig(slab=4))
  phantom.make_head_phantom(key, (8, 8, 8), config=config)  # Warm caches.
  tracemalloc.start()
  try:
    phantom.make_head_phantom(key, shape, spacing=0.2, config=config)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  voxels, plane = np.prod(shape), shape[1] * shape[2]
  assert peak <= 8 * voxels + 120 * config.slab * plane + 2**20


def test_paper_grid_geometry():
  spacing, _ = phantom.phantom_geometry(phantom.PAPER_SHAPE, 0.2)
  np.testing.assert_allclose(spacing, 0.2)
  np.testing.assert_allclose(
      np.asarray(phantom.PAPER_SHAPE) * spacing, phantom.FOV_MM_ZYX
  )
