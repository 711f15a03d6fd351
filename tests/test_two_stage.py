"""The two-stage label sampler: deterministic from its key, high-reward and
disagreement actions, most-disagreed pairs, never a labelled pair again."""

import jax
import numpy as np

from rlhf_tf.preferences import two_stage


def _rewards(seed=0, seeds=3, num=40):
  return np.random.default_rng(seed).normal(size=(seeds, num))


def test_the_sampler_is_deterministic_from_its_key():
  r = _rewards()
  a = two_stage.disagreement_pairs(jax.random.key(1), r, 25, num_candidates=300)
  b = two_stage.disagreement_pairs(jax.random.key(1), r, 25, num_candidates=300)
  c = two_stage.disagreement_pairs(jax.random.key(2), r, 25, num_candidates=300)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  np.testing.assert_array_equal(
      two_stage.candidate_actions(jax.random.key(3), 50, 4),
      two_stage.candidate_actions(jax.random.key(3), 50, 4))
  np.testing.assert_array_equal(two_stage.new_actions(r, 5, 5),
                                two_stage.new_actions(r, 5, 5))


def test_all_pairs_are_drawn_when_candidates_cover_them():
  r = _rewards(num=9)
  pairs = two_stage.disagreement_pairs(jax.random.key(0), r, 36,
                                       num_candidates=10 ** 6)
  assert sorted(map(tuple, np.sort(pairs, axis=1))) == [
      (a, b) for a in range(9) for b in range(a + 1, 9)]
  # Shown in both orders.
  assert 0 < np.mean(pairs[:, 0] < pairs[:, 1]) < 1


def test_pairs_the_seeds_disagree_on_come_first_and_labelled_ones_never():
  r = np.zeros((3, 10))
  r[:, :] = np.arange(10)  # The seeds agree on the order...
  r[0, 7], r[1, 7], r[2, 7] = 20.0, -20.0, 0.0  # ...except for action 7.
  pairs = two_stage.disagreement_pairs(jax.random.key(0), r, 9,
                                       num_candidates=45)
  assert all(7 in p for p in pairs)
  again = two_stage.disagreement_pairs(jax.random.key(0), r, 9,
                                       exclude=[tuple(p) for p in pairs[:4]],
                                       num_candidates=45)
  labelled = {tuple(sorted(p)) for p in pairs[:4]}
  assert not labelled & {tuple(sorted(p)) for p in again}


def test_new_actions_are_high_reward_then_disagreement():
  r = np.tile(np.linspace(0.0, 1.0, 20), (3, 1))
  r[:, 5] = (-3.0, 3.0, 0.0)  # Low mean, seeds disagree.
  idx = two_stage.new_actions(r, num_high=3, num_disagree=1)
  np.testing.assert_array_equal(idx, [19, 18, 17, 5])
  # Reward scales per seed do not matter.
  scaled = r * np.array([[1.0], [100.0], [0.01]])
  np.testing.assert_array_equal(two_stage.new_actions(scaled, 3, 0),
                                [19, 18, 17])
