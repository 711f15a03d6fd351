"""Votes cast in the browser UI train the reward model exactly like
simulated ones: same scenes, same action ids, same targets."""

import json
import os

import ml_collections
import numpy as np
import pytest

from rlhf_tf.jobs import collect, reward
from rlhf_tf.preferences import dataset
from rlhf_tf.reward import from_store, predict, tensorboard
from rlhf_tf.ui import app as app_lib
from rlhf_tf.ui import auth

KEYS = auth.InspectorKeys(
    b'human-votes-test-secret', ['inspector-1', 'inspector-2']
)


def signed_in(name):
  return {'Authorization': f'Bearer {KEYS.token(name)}'}


def test_ui_votes_become_training_data_like_simulated_ones(
    tmp_path, smoke_config
):
  config = smoke_config('reward_ce')
  config.simulate_if_empty = False
  config.data_source = 'human'
  workdir = str(tmp_path)
  store = dataset.open_store(config, workdir)
  scenes = collect.dataset_scenes(config, store)
  (scene_id,) = scenes.scene_ids
  app = app_lib.create_app(
      store.path,
      scenes.render_png,
      KEYS,
      scene_ids=list(scenes.scene_ids),
      render_key=scenes.render_key,
  )
  client = app.test_client()
  shown = []
  for i, choice in enumerate(('left', 'right', 'equal', 'both_bad')):
    pair = client.post(
        '/api/next', json={}, headers=signed_in('inspector-1')
    ).json['pair']
    r = client.post(
        '/api/vote',
        json=dict(
            scene_id=pair['scene_id'],
            pair_id=pair['pair_id'],
            left_action=pair['left_action'],
            right_action=pair['right_action'],
            choice=choice,
            vote_id=f'vote-{i:08d}',
            lease=pair['lease'],
        ),
        headers=signed_in('inspector-1'),
    )
    assert r.status_code == 200, r.json
    shown.append(
        (pair['pair_id'], pair['left_action'], pair['right_action'], choice)
    )
  # The same answers, given by the simulated inspector.
  store.record_votes(
      [
          dict(
              scene_id=scene_id,
              pair_id=p,
              left_action=l,
              right_action=r,
              choice=c,
              inspector='simulated',
              source='simulated',
          )
          for p, l, r, c in shown
      ]
  )
  scene_ids, human = from_store.load_training_data(config, workdir)
  assert scene_ids == [scene_id]
  jh = [dataset.scene_jh(store, scene_id).image]
  simulated = from_store.preference_data(
      store, scene_ids, jh, source='simulated'
  )
  for field in ('jh', 'actions', 'scene', 'left', 'right', 'target'):
    np.testing.assert_array_equal(
        getattr(human, field), getattr(simulated, field)
    )
  # 'both_bad' is stored apart from 'equal' but trains as a tie by default.
  assert config.both_bad == 'tie'
  expected = {
      (l, r): {'left': 1.0, 'right': 0.0, 'equal': 0.5, 'both_bad': 0.5}[c]
      for _, l, r, c in shown
  }
  got = {
      (int(l), int(r)): float(t)
      for l, r, t in zip(human.left, human.right, human.target)
  }
  assert got == expected
  config.both_bad = 'drop'  # ... or is left out when configured so
  _, dropped = from_store.load_training_data(config, workdir)
  assert {(int(l), int(r)) for l, r in zip(dropped.left, dropped.right)} == {
      (l, r) for _, l, r, c in shown if c != 'both_bad'
  }
  config.both_bad = 'tie'
  # And the reward job trains on them.
  config.reward.held_out_fraction = 0.0
  config.reward.num_epochs = 1
  summary = reward.train_reward(config, workdir)
  assert summary['num_train_pairs'] == 4
  # Its metrics, also as TensorBoard events.
  run = tmp_path / 'reward' / 'ce' / 'seed_0'
  last = json.loads((run / 'metrics.jsonl').read_text().splitlines()[-1])
  scalars = {
      t: v for t, _, v in tensorboard.read_scalars(str(run / 'tensorboard'))
  }
  assert scalars['train_loss'] == pytest.approx(last['train_loss'], rel=1e-6)


def test_disagreement_selection_uses_the_trained_reward_checkpoints(
    tmp_path, smoke_config
):
  config = smoke_config('reward_ce')
  config.reward.num_epochs = 1
  workdir = str(tmp_path)
  reward.train_reward(config, workdir)  # simulated votes, 2 seeds
  store = dataset.open_store(config, workdir)
  scene_id = dataset.scene_specs(config)[0].scene_id
  ui = ml_collections.ConfigDict(
      dict(
          ensemble_reward_workdir=workdir,
          ensemble_loss='ce',
          ensemble_rewards_path='',
          selection='disagreement',
          reward=config.reward,
      )
  )
  rewards = predict.every_seed_scene_rewards(
      os.path.join(workdir, 'reward'), 'ce', config.reward, store, scene_id
  )
  num_actions = len(store.actions(scene_id))
  assert rewards.shape == (config.reward.num_seeds, num_actions)
  assert np.all(np.isfinite(rewards))
  assert not np.allclose(rewards[0], rewards[1])  # two seeds, two models
  scenes = collect.dataset_scenes(config, store)
  app = app_lib.create_app(
      store.path,
      scenes.render_png,
      KEYS,
      scene_ids=[scene_id],
      render_key=scenes.render_key,
      selection='disagreement',
      ensemble_rewards=collect.load_ensemble_rewards(ui, store.path),
  )
  r = app.test_client().post(
      '/api/next', json={}, headers=signed_in('inspector-2')
  )
  assert r.status_code == 200, r.json
  # The most disputed pair: the largest variance over the seeds of
  # sigmoid(r_a - r_b) among the pairs.
  p = 1 / (1 + np.exp(-(rewards[:, :, None] - rewards[:, None, :])))
  var = p.var(axis=0)
  pairs = [(q.action_a, q.action_b) for q in store.pairs(scene_id)]
  best = max(pairs, key=lambda ab: var[ab])
  got = r.json['pair']
  assert {got['left_action'], got['right_action']} == set(best)


def test_collect_serves_every_scene_of_the_dataset(tmp_path, smoke_config):
  """A dataset of two phantoms: both are registered and served, each pair
  handed out lies within one scene, and its renderings and JH come from
  that scene."""
  config = smoke_config('collect')
  config.scenes = 'phantom:0+1'
  store = dataset.open_store(config, str(tmp_path))
  scenes = collect.dataset_scenes(config, store)
  want = [s.scene_id for s in dataset.scene_specs(config)]
  assert list(scenes.scene_ids) == want and len(want) == 2
  assert sorted(s['scene_id'] for s in store.scenes()) == sorted(want)
  app = app_lib.create_app(
      store.path,
      scenes.render_png,
      KEYS,
      scene_ids=list(scenes.scene_ids),
      render_key=scenes.render_key,
      jh_png=scenes.jh_png,
  )
  client = app.test_client()
  seen = {}
  for i in range(12):
    pair = client.post(
        '/api/next', json={}, headers=signed_in('inspector-1')
    ).json['pair']
    s, l, r = pair['scene_id'], pair['left_action'], pair['right_action']
    stored = {
        (q.action_a, q.action_b)
        for q in store.pairs(s)
        if q.pair_id == pair['pair_id']
    }
    assert stored == {(min(l, r), max(l, r))}
    seen[s] = (l, r)
    vote = client.post(
        '/api/vote',
        json=dict(
            scene_id=s,
            pair_id=pair['pair_id'],
            left_action=l,
            right_action=r,
            choice='left',
            vote_id=f'vote-{i:08d}',
            lease=pair['lease'],
        ),
        headers=signed_in('inspector-1'),
    )
    assert vote.status_code == 200, vote.json
  assert set(seen) == set(want)
  # The same action id renders differently in the two scenes.
  images = [client.get(f'/render/{s}/0.png').data for s in want]
  assert all(i.startswith(b'\x89PNG') for i in images)
  assert images[0] != images[1]
  for s, (l, r) in seen.items():
    jh = client.get(f'/jh/{s}/{l}/{r}.png')
    assert jh.status_code == 200 and jh.data.startswith(b'\x89PNG')
  store.close()
