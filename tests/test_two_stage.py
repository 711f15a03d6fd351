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
      two_stage.candidate_actions(jax.random.key(3), 50, 4),
  )
  np.testing.assert_array_equal(
      two_stage.new_actions(r, 5, 5), two_stage.new_actions(r, 5, 5)
  )


def test_all_pairs_are_drawn_when_candidates_cover_them():
  r = _rewards(num=9)
  pairs = two_stage.disagreement_pairs(
      jax.random.key(0), r, 36, num_candidates=10**6
  )
  assert sorted(map(tuple, np.sort(pairs, axis=1))) == [
      (a, b) for a in range(9) for b in range(a + 1, 9)
  ]
  # Shown in both orders.
  assert 0 < np.mean(pairs[:, 0] < pairs[:, 1]) < 1


def test_pairs_the_seeds_disagree_on_come_first_and_labelled_ones_never():
  r = np.zeros((3, 10))
  r[:, :] = np.arange(10)  # The seeds agree on the order...
  r[0, 7], r[1, 7], r[2, 7] = 20.0, -20.0, 0.0  # ...except for action 7.
  pairs = two_stage.disagreement_pairs(
      jax.random.key(0), r, 9, num_candidates=45
  )
  assert all(7 in p for p in pairs)
  again = two_stage.disagreement_pairs(
      jax.random.key(0),
      r,
      9,
      exclude=[tuple(p) for p in pairs[:4]],
      num_candidates=45,
  )
  labelled = {tuple(sorted(p)) for p in pairs[:4]}
  assert not labelled & {tuple(sorted(p)) for p in again}


def test_new_actions_are_high_reward_then_disagreement():
  r = np.tile(np.linspace(0.0, 1.0, 20), (3, 1))
  r[:, 5] = (-3.0, 3.0, 0.0)  # Low mean, seeds disagree.
  idx = two_stage.new_actions(r, num_high=3, num_disagree=1)
  np.testing.assert_array_equal(idx, [19, 18, 17, 5])
  # Reward scales per seed do not matter.
  scaled = r * np.array([[1.0], [100.0], [0.01]])
  np.testing.assert_array_equal(
      two_stage.new_actions(scaled, 3, 0), [19, 18, 17]
  )


def test_partner_pairs_label_every_new_action_with_its_most_disputed():
  r = np.tile(np.arange(12.0), (3, 1))  # The seeds agree...
  r[:, 3] = (20.0, -20.0, 0.0)  # ...except on action 3.
  new = np.array([10, 11])
  pairs = two_stage.partner_pairs(
      jax.random.key(0), r, new, per_action=2, num_partners=11
  )
  assert len(pairs) == 4
  by_new = {a: sorted(set(p) - {a}) for a in new for p in pairs if a in p}
  assert set(by_new) == {10, 11}
  # Every new action's first partner is the disputed one; no self pairs,
  # no pair twice, both orders shown, deterministic from the key.
  for a in new:
    partners = [int(p[0] if p[1] == a else p[1]) for p in pairs if a in p]
    assert 3 in partners and a not in partners
  assert len({tuple(sorted(p)) for p in pairs}) == 4
  np.testing.assert_array_equal(
      pairs,
      two_stage.partner_pairs(jax.random.key(0), r, new, 2, num_partners=11),
  )
  many = two_stage.partner_pairs(
      jax.random.key(1), _rewards(num=60), np.arange(40, 60), 3
  )
  assert 0 < np.mean(np.isin(many[:, 0], np.arange(40, 60))) < 1
  # A labelled pair is not asked again.
  again = two_stage.partner_pairs(
      jax.random.key(0), r, new, 2, exclude=[(3, 10), (11, 3)], num_partners=11
  )
  assert not {(3, 10), (3, 11)} & {tuple(sorted(p)) for p in again}
