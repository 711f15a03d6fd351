"""Leave-one-scene-out: folds, and held-out scenes never reach training."""

import json
import os

import numpy as np
import pytest

from rlhf_tf.evaluation import scene_holdout
from rlhf_tf.jobs import experiment_file, JOBS
from rlhf_tf.preferences import dataset, inspector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_one_fold_per_scene_without_it():
  folds = scene_holdout.folds(['a', 'b', 'c'])
  assert [(f.held_out, f.train_ids) for f in folds] == [
      ('a', ('b', 'c')),
      ('b', ('a', 'c')),
      ('c', ('a', 'b')),
  ]
  only = scene_holdout.folds(
      ['a', 'b', 'cranium'], held_out=['cranium'], train_pool=['a', 'b']
  )
  assert [(f.held_out, f.train_ids) for f in only] == [('cranium', ('a', 'b'))]
  # A pool that names the held-out scene still never trains on it.
  assert scene_holdout.folds(['a', 'b'], ['a'], ['a', 'b'])[0].train_ids == (
      'b',
  )


def test_folds_training_on_the_same_scenes_share_one_reward():
  every = scene_holdout.folds(['a', 'b', 'c'])
  assert scene_holdout.reward_folds(every) == {'a': 'a', 'b': 'b', 'c': 'c'}
  # Validation: held-out scenes outside the pool train on the same scenes.
  val = scene_holdout.folds(
      ['a', 'b', 'c', 'd', 'e'], ['c', 'a', 'e'], ['a', 'b', 'd']
  )
  assert [f.train_ids for f in val] == [
      ('a', 'b', 'd'),
      ('b', 'd'),
      ('a', 'b', 'd'),
  ]
  assert scene_holdout.reward_folds(val) == {'c': 'c', 'a': 'a', 'e': 'c'}


def test_validation_split_never_measures_a_test_fold():
  path = os.path.join(ROOT, 'experiments', 'multiscene.py')
  val = experiment_file.load_config(path + ':validation')
  test = experiment_file.load_config(path)

  def ids(config, text):
    one = config.copy_and_resolve_references()
    one.scenes = text
    return {s.scene_id for s in dataset.scene_specs(one)}

  measured = ids(val, val.held_out)
  assert len(measured) == 6
  assert not measured & ids(test, test.held_out)
  assert not measured & ids(val, val.train_pool)


def test_bad_folds_are_refused():
  with pytest.raises(ValueError, match='among the training scenes'):
    scene_holdout.Fold('a', ('a', 'b'))
  with pytest.raises(ValueError, match='no training scene'):
    scene_holdout.folds(['a'])
  with pytest.raises(ValueError, match='unknown scene'):
    scene_holdout.folds(['a', 'b'], held_out=['c'])


def test_smoke_run_trains_each_fold_on_the_other_scenes_votes_only(tmp_path):
  config = experiment_file.load_config(
      os.path.join(ROOT, 'experiments', 'multiscene.py') + ':smoke'
  )
  config.scenes = 'phantom:0-1,phantom:5'
  # Held out: a scenes entry and a scene id; phantom 1 only trains.
  config.held_out = 'phantom:0,phantom-s5-24x24x24'
  config.reward.num_seeds = 2  # The reward: the two seeds' mean z-score.
  summary = JOBS[config.job](config, str(tmp_path))
  ids = ['phantom-s0-24x24x24', 'phantom-s1-24x24x24', 'phantom-s5-24x24x24']
  held = [ids[0], ids[2]]
  assert [f['scene_id'] for f in summary['folds']] == held
  for fold in summary['folds']:
    assert fold['scene_id'] not in fold['train_ids']
    assert sorted(fold['train_ids'] + [fold['scene_id']]) == ids
    # The fold's reward saw exactly the votes of its training scenes.
    with open(
        tmp_path / 'multiscene' / f'fold_{fold["scene_id"]}' / 'summary.json'
    ) as f:
      trained = json.load(f)
    assert trained['num_train_pairs'] + trained[
        'num_heldout_pairs'
    ] == config.pairs.num * len(fold['train_ids'])
    assert 0.0 <= fold['decisive_accuracy'] <= 1.0
    assert fold['num_decisive'] > 0
    errors = fold['errors']
    assert sum(b['n'] for b in errors['by_score_gap']) == fold['num_decisive']
    assert (
        errors['one_fails']['n'] + errors['both_pass']['n']
        == fold['num_decisive']
    )
  # Gold scores (unseen actions) only for the scenes that are measured.
  gold = sorted(
      p for p in os.listdir(tmp_path / 'multiscene') if p.startswith('gold_')
  )
  assert gold == [f'gold_{s}.npz' for s in held]
  for name in ('summary.json', 'table.md', 'held_out.png'):
    assert os.path.getsize(tmp_path / 'multiscene' / name) > 100


def test_error_breakdown_places_the_errors():
  """Three actions; the inspector decides by target_visible (beyond its
  tolerance) or, when that ties, by unoccluded. A reward that ranks by
  target_visible only gets the first kind right and the second wrong."""
  icfg = inspector.InspectorConfig()
  crit = np.array(
      [
          [0.9, 0.5, 1, 1, 1],
          [0.7, 0.5, 1, 1, 1],
          [0.9, 0.9, 1, 1, 1],
          [0.2, 0.5, 1, 1, 1],
      ],
      float,
  )
  pairs = np.array([[0, 1], [1, 2], [0, 2], [3, 1], [0, 0]])
  target = np.array([1.0, 0.0, 0.0, 0.0, 0.5])
  rewards = np.array([0.9, 0.7, 0.8, 0.2])  # 0 above 2: wrong on (0, 2)
  out = scene_holdout.error_breakdown(
      rewards, crit, pairs, target, icfg, num_bins=2
  )
  assert out['score_accuracy'] == 1.0
  assert out['by_criterion']['target_visible'] == dict(n=3, accuracy=1.0)
  assert out['by_criterion']['unoccluded'] == dict(n=1, accuracy=0.0)
  assert out['one_fails'] == dict(n=1, accuracy=1.0)
  assert out['both_pass']['n'] == 3
  assert sum(b['n'] for b in out['by_score_gap']) == 4
  # The wrong pair has the smallest score gap: it is in the first bin.
  assert out['by_score_gap'][0]['accuracy'] < 1.0
  assert out['by_score_gap'][1]['accuracy'] == 1.0
