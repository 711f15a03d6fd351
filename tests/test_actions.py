"""Action set D (50 random / 10 expert / 40 augmented) and preference pairs."""

import jax
import ml_collections
import numpy as np
import pytest

from rlhf_tf.preferences import actions
from rlhf_tf.render import polygon, polygon_validation

EXPERTS = np.array(
    [
        [[0.3 + 0.01 * k, 0.05], [0.9, 0.05], [0.9, 0.6], [0.35, 0.7]]
        for k in range(10)
    ],
    np.float32,
)


def test_action_set_counts_provenance_and_reproducibility():
  d = actions.build_action_set(jax.random.key(0), EXPERTS)
  assert d.vertices.shape == (100, 4, 2)
  assert len(d.indices('expert')) == 10
  assert len(d.indices('random')) == 50
  assert len(d.indices('augmented')) == 40
  augmented = d.indices('augmented')
  parents = np.asarray(d.parent)[augmented]
  assert sorted(set(parents.tolist())) == list(range(10))
  assert np.all(np.asarray(d.parent)[d.indices('random')] == -1)
  again = actions.build_action_set(jax.random.key(0), EXPERTS)
  np.testing.assert_array_equal(d.vertices, again.vertices)
  other = actions.build_action_set(jax.random.key(1), EXPERTS)
  assert not np.array_equal(d.vertices[10:], other.vertices[10:])


def test_action_set_from_config_uses_the_config_sizes():
  cfg = ml_collections.ConfigDict(
      dict(seed=0, num_random=7, num_augmented=3, sigma=0.05)
  )
  d = actions.action_set_from_config(jax.random.key(2), EXPERTS, cfg)
  assert d.vertices.shape == (20, 4, 2)
  assert len(d.indices('random')) == 7 and len(d.indices('augmented')) == 3
  direct = actions.build_action_set(
      jax.random.key(2), EXPERTS, num_random=7, num_augmented=3, sigma=0.05
  )
  np.testing.assert_array_equal(d.vertices, direct.vertices)


def test_every_action_is_a_valid_polygon_and_augmentations_stay_close():
  d = actions.build_action_set(jax.random.key(3), EXPERTS, sigma=0.02)
  for v in d.vertices:
    polygon_validation.validate_polygon(v)
  for i in d.indices('augmented'):
    parent = np.asarray(polygon.canonicalize(EXPERTS[d.parent[i]]))
    # Small shifts keep the vertex order, so vertices pair up one to one.
    assert np.abs(d.vertices[i] - parent).max() < 0.15


def test_invalid_expert_is_rejected_with_its_index():
  bad = EXPERTS.copy()
  bad[4, 1] = [1.5, 0.2]
  with pytest.raises(ValueError, match='expert action 4'):
    actions.build_action_set(jax.random.key(0), bad)


def test_pairs_are_distinct_unordered_and_randomly_ordered():
  pairs = actions.sample_pairs(jax.random.key(0), 100, 4000)
  assert pairs.shape == (4000, 2)
  assert np.all(pairs[:, 0] != pairs[:, 1])
  unordered = {tuple(sorted(p)) for p in pairs.tolist()}
  assert len(unordered) == 4000
  left_smaller = np.mean(pairs[:, 0] < pairs[:, 1])
  assert 0.45 < left_smaller < 0.55
  np.testing.assert_array_equal(
      pairs, actions.sample_pairs(jax.random.key(0), 100, 4000)
  )
  with pytest.raises(ValueError, match='4950'):
    actions.sample_pairs(jax.random.key(0), 100, 5000)
