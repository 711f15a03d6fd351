"""record_votes: many machine-made votes in one all-or-nothing transaction."""

import pytest

from rlhf_tf.preferences import store as store_lib

SQUARE = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]
TRI = [[0.2, 0.2], [0.9, 0.2], [0.5, 0.9]]


def _store(tmp_path):
  s = store_lib.PreferenceStore(str(tmp_path / 'p.sqlite'))
  s.add_scene('s')
  s.add_actions('s', [SQUARE, TRI, SQUARE], 'random')
  s.add_pairs('s', [(0, 1), (1, 2)])
  return s


def test_batch_is_recorded_with_the_right_targets(tmp_path):
  s = _store(tmp_path)
  ids = s.record_votes(
      [
          dict(
              scene_id='s',
              pair_id=0,
              left_action=0,
              right_action=1,
              choice='left',
              inspector='sim',
              source='simulated',
          ),
          dict(
              scene_id='s',
              pair_id=1,
              left_action=2,
              right_action=1,
              choice='equal',
              inspector='sim',
              source='simulated',
          ),
      ]
  )
  assert len(set(ids)) == 2
  examples = sorted(s.training_examples('s'))
  assert [(e.left_action, e.right_action, e.target) for e in examples] == [
      (0, 1, 1.0),
      (2, 1, 0.5),
  ]


def test_one_bad_vote_aborts_the_whole_batch(tmp_path):
  s = _store(tmp_path)
  good = dict(
      scene_id='s',
      pair_id=0,
      left_action=0,
      right_action=1,
      choice='left',
      inspector='sim',
      source='simulated',
  )
  with pytest.raises(store_lib.VoteError, match='vote 1: .*pair'):
    s.record_votes([good, dict(good, pair_id=7)])
  with pytest.raises(store_lib.VoteError, match='vote 1: .*choice'):
    s.record_votes([good, dict(good, choice='maybe')])
  with pytest.raises(store_lib.VoteError, match='unknown fields'):
    s.record_votes([dict(good, colour='red')])
  assert s.vote_counts()['events'] == 0
