"""Simulated inspector: priority list, antisymmetry, ties, expert vs empty."""

import functools

import jax
import numpy as np
import pytest

from rlhf_tf.data import phantom
from rlhf_tf.preferences import actions, inspector, scenes, tissues
from rlhf_tf.render import histogram


def test_first_differing_criterion_decides_and_all_close_is_equal():
  cfg = inspector.InspectorConfig(tolerances=(0.1,) * 5)
  base = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
  # Criterion 2 better by more than its tolerance wins over a huge loss in
  # the lower-priority criteria 3-5.
  left = base + [0.05, 0.2, -0.4, -0.4, -0.4]
  assert inspector.compare_criteria(left, base, cfg) == 'left'
  assert inspector.compare_criteria(base, left, cfg) == 'right'
  assert inspector.compare_criteria(base + 0.09, base, cfg) == 'equal'


def test_two_renderings_failing_the_first_priority_are_equal():
  cfg = inspector.InspectorConfig(tolerances=(0.01,) * 5, fail_below=0.5)
  poor = np.array([0.2, 0.9, 0.9, 0.9, 0.9])
  worse = np.array([0.45, 0.1, 0.1, 0.1, 0.1])
  assert inspector.compare_criteria(poor, worse, cfg) == 'equal'
  # One passing rendering is compared as usual, whatever the other.
  assert (
      inspector.compare_criteria(poor + [0.35, 0, 0, 0, 0], worse, cfg)
      == 'left'
  )
  off = inspector.InspectorConfig(tolerances=(0.01,) * 5, fail_below=0.0)
  assert inspector.compare_criteria(poor, worse, off) == 'right'
  with pytest.raises(ValueError, match='fail_below'):
    inspector.InspectorConfig(fail_below=1.5)


def test_judging_is_antisymmetric_and_identical_renderings_tie():
  crit = np.random.RandomState(0).rand(30, 5)
  crit[7] = crit[3]
  pairs = actions.sample_pairs(jax.random.key(0), 30, 300)
  flip = {'left': 'right', 'right': 'left', 'equal': 'equal'}
  ans = inspector.judge_pairs(None, crit, pairs)
  swapped = inspector.judge_pairs(None, crit, pairs[:, ::-1])
  assert [flip[a] for a in ans] == swapped
  assert inspector.judge_pairs(None, crit, np.array([[3, 7], [7, 3]])) == [
      'equal',
      'equal',
  ]


def test_noise_flips_some_answers_reproducibly():
  crit = np.random.RandomState(1).rand(20, 5)
  pairs = actions.sample_pairs(jax.random.key(0), 20, 150)
  clean = inspector.judge_pairs(None, crit, pairs)
  cfg = inspector.InspectorConfig(flip_prob=0.3)
  noisy = inspector.judge_pairs(jax.random.key(5), crit, pairs, cfg)
  changed = np.mean([a != b for a, b in zip(clean, noisy)])
  assert 0.15 < changed < 0.45
  assert noisy == inspector.judge_pairs(jax.random.key(5), crit, pairs, cfg)


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(tolerances=(0.1,) * 4), 'tolerances needs 5'),
        (dict(weights=(1, 1, 1, 1, -1)), 'weights must be finite'),
        (dict(flip_prob=1.5), 'flip_prob'),
        (dict(temperature=-1.0), 'temperature'),
    ],
)
def test_bad_inspector_config(kwargs, message):
  with pytest.raises(ValueError, match=message):
    inspector.InspectorConfig(**kwargs)


def test_dense_soft_voxels_near_bone_count_as_bone_far_ones_as_artifacts():
  groups = np.full((1, 1, 12), tissues.SOFT, np.uint8)
  groups[0, 0, :3] = tissues.BONE
  hu = np.full((1, 1, 12), 40.0)
  hu[0, 0, 3] = 600.0  # Blurred bone edge, labelled soft tissue.
  hu[0, 0, 10] = 900.0  # A streak far from any bone.
  out = tissues.attribute_partial_volume(groups, hu, radius=2)
  assert out[0, 0, 3] == tissues.BONE
  assert out[0, 0, 10] == tissues.METAL
  assert out[0, 0, 6] == tissues.SOFT
  np.testing.assert_array_equal(
      tissues.groups_from_hu(np.array([-1000.0, 0.0, 500.0, 2500.0, 3071.0])),
      [tissues.AIR, tissues.SOFT, tissues.BONE, tissues.TEETH, tissues.METAL],
  )


@functools.lru_cache(maxsize=None)
def _small_scene():
  volume = phantom.make_head_phantom(jax.random.key(0), (40, 40, 40))
  render = scenes.default_config()
  render.image_size = 24
  hist = histogram.default_config()
  hist.bins = 64
  return scenes.build_scene('small', volume, hist, render)


def _criteria(scene, vertices):
  rgba, w, h = scene.render_tissues(np.asarray(vertices, np.float32))
  return inspector.criteria(np.asarray(w), np.asarray(h), np.asarray(rgba))


def test_expert_beats_a_tf_that_shows_nothing_and_one_that_shows_skin():
  scene = _small_scene()
  expert = _criteria(scene, scene.experts[0])
  # Air at high gradient: no voxel of the phantom lies there.
  nothing = _criteria(
      scene, [[0.02, 0.9], [0.08, 0.9], [0.08, 0.99], [0.02, 0.99]]
  )
  # Soft tissue (-200..200 HU) at every gradient: an opaque skin surface.
  skin = _criteria(scene, [[0.2, 0.0], [0.3, 0.0], [0.3, 1.0], [0.2, 1.0]])
  assert inspector.compare_criteria(expert, nothing) == 'left'
  assert inspector.compare_criteria(nothing, expert) == 'right'
  assert inspector.compare_criteria(expert, skin) == 'left'
  assert inspector.score(expert) > inspector.score(skin)
  assert inspector.score(expert) > inspector.score(nothing)
  assert np.all((expert >= 0) & (expert <= 1))
