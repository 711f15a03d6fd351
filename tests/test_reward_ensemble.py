"""Ensemble rewards on one scale: a seed's free Bradley-Terry offset (or
scale) must not change the conservative ranking (propose) or the rewards
PPO optimises (agent/proxy_reward.py)."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import ml_collections
import numpy as np

from rlhf_tf.agent import ppo_objective, proxy_reward
from rlhf_tf.evaluation import proposal
from rlhf_tf.reward import checkpointing, ensemble, predict, train
from rlhf_tf.reward import model as model_lib


def _tiny_model_config():
  cfg = train.default_config()
  m = cfg.model
  m.conv_features, m.strides, m.input_pool, m.readout_pool = (
      (4, 4),
      (2, 2),
      1,
      1,
  )
  m.action_features, m.hidden, m.n_vertices = (8, 8), (8, 4), 4
  return cfg


def _stacked_params(num_seeds=3):
  """A tiny model's seeds, the head scaled so that rewards spread over a few
  units as trained ones do (at init they spread over ~0.01, and float32
  then cannot hold r + 100 to the precision the tests compare at)."""
  model = model_lib.model_from_config(_tiny_model_config().model)
  keys = jax.random.split(jax.random.key(3), num_seeds)
  params = jax.vmap(lambda k: model_lib.init_params(model, k, 16))(keys)
  params = jax.tree_util.tree_map(np.array, params)
  params['head']['kernel'] *= 300.0
  return model, params


def _shift_head(params, seed: int, offset: float, scale: float = 1.0):
  """Seed ``seed``'s reward becomes scale * r + offset (the head is the
  model's last, linear layer)."""
  out = jax.tree_util.tree_map(np.array, params)
  head = out['head']
  head['kernel'][seed] *= scale
  head['bias'][seed] = scale * head['bias'][seed] + offset
  return out


def test_reference_set_is_fixed_and_valid():
  a, b = ensemble.reference_actions(4, 64), ensemble.reference_actions(4, 64)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (64, 4, 2) and 0.0 <= a.min() and a.max() <= 1.0
  assert len({x.tobytes() for x in a}) == 64


def test_standardise_by_hand():
  ref = np.array([[0.0, 2.0], [10.0, 14.0]])  # means 1, 12; stds 1, 2
  r = np.array([[3.0], [8.0]])
  np.testing.assert_allclose(ensemble.standardise(r, ref), [[2.0], [-2.0]])
  flat = ensemble.standardise(np.ones((1, 2)), np.full((1, 5), 1.0))
  assert np.all(np.isfinite(flat)) and np.all(flat == 0.0)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2),
    st.floats(-1e3, 1e3),
    st.floats(0.05, 50.0),
    st.integers(0, 2**31 - 1),
)
def test_per_seed_affine_change_leaves_z_and_ranking_alone(
    seed, offset, scale, data_seed
):
  rng = np.random.default_rng(data_seed)
  raw, ref = rng.normal(size=(3, 12)), rng.normal(size=(3, 40))
  moved, moved_ref = raw.copy(), ref.copy()
  moved[seed] = scale * moved[seed] + offset
  moved_ref[seed] = scale * moved_ref[seed] + offset
  z, z_moved = proposal.standardise(raw, ref), proposal.standardise(
      moved, moved_ref
  )
  np.testing.assert_allclose(z_moved, z, rtol=1e-6, atol=1e-6)
  actions = rng.uniform(size=(12, 4, 2))
  np.testing.assert_array_equal(
      proposal.rank(actions, z_moved, 1.0, 5), proposal.rank(actions, z, 1.0, 5)
  )


def test_a_seed_100_higher_changes_the_raw_ranking_not_the_standardised():
  """The case the standardisation is for, on a real (tiny) reward model."""
  model, params = _stacked_params()
  jh = np.random.default_rng(0).uniform(size=(16, 16)).astype(np.float32)
  actions = ensemble.reference_actions(4, 40, seed=1)
  reference = ensemble.reference_actions(4, 64)
  fn = jax.jit(ensemble.standardised_ensemble_fn(model, params, reference))
  shifted = _shift_head(params, 2, 100.0)
  fn_shifted = jax.jit(
      ensemble.standardised_ensemble_fn(model, shifted, reference)
  )
  z, z_shifted = np.asarray(fn(jh, actions)), np.asarray(
      fn_shifted(jh, actions)
  )
  np.testing.assert_allclose(z_shifted, z, rtol=1e-3, atol=1e-3)
  # The same through PPO's combine (mean - k std over the seeds).
  _, cons, _ = ppo_objective.combine_ensemble(z[None], 1.0)
  _, cons_shifted, _ = ppo_objective.combine_ensemble(z_shifted[None], 1.0)
  assert np.argmax(cons) == np.argmax(cons_shifted)
  np.testing.assert_array_equal(
      np.argsort(np.asarray(cons)[0])[-5:],
      np.argsort(np.asarray(cons_shifted)[0])[-5:],
  )

  # Raw rewards: the +100 seed sets the std, and the ranking moves.
  def raw(p):
    return np.stack(
        [
            np.asarray(
                model_lib.score(
                    model, q, model_lib.encode(model, q, jh), actions
                )
            )
            for q in (
                jax.tree_util.tree_map(lambda x, s=s: x[s], p) for s in range(3)
            )
        ]
    )

  before = raw(params).mean(0) - raw(params).std(0)  # k = 1
  after = raw(shifted).mean(0) - raw(shifted).std(0)
  assert np.argmax(before) != np.argmax(after)  # another 'best' action
  np.testing.assert_allclose(raw(shifted)[2], raw(params)[2] + 100.0, rtol=1e-5)
  # z-scores of the real model agree with the numpy path of propose.
  ref_raw = np.stack(
      [
          np.asarray(
              model_lib.score(
                  model, q, model_lib.encode(model, q, jh), reference
              )
          )
          for q in (
              jax.tree_util.tree_map(lambda x, s=s: x[s], params)
              for s in range(3)
          )
      ]
  )
  np.testing.assert_allclose(
      proposal.standardise(raw(params), ref_raw), z, rtol=1e-4, atol=1e-4
  )


def test_agent_reward_fn_ignores_a_seed_offset(tmp_path):
  """The agent's ensemble reward: the same with seed 1 moved by +100."""
  model, params = _stacked_params()
  cfg = ml_collections.ConfigDict(
      dict(
          reward=_tiny_model_config(),
          agent=dict(loss='ce', ensemble=True, reference_actions=64),
      )
  )
  outs = []
  for name, p in (
      ('plain', params),
      ('shifted', _shift_head(params, 1, 100.0)),
  ):
    ckpt = tmp_path / name / 'ce' / 'checkpoints'
    with checkpointing.open_manager(str(ckpt)) as mngr:
      checkpointing.save(mngr, 1, p, p, {'seed_0': []})
    fn = proxy_reward.load_reward_fn(cfg, str(tmp_path / name))
    jh = np.random.default_rng(2).uniform(size=(16, 16)).astype(np.float32)
    outs.append(
        np.asarray(jax.jit(fn)(jh, ensemble.reference_actions(4, 24, seed=5)))
    )
  assert outs[0].shape == (3, 24)
  np.testing.assert_allclose(outs[1], outs[0], rtol=1e-3, atol=1e-3)
  # The single-seed path still returns that seed's raw rewards.
  (tmp_path / 'plain' / 'summary.json').write_text(
      json.dumps(dict(selected=dict(ce=dict(seed=2))))
  )
  cfg.agent.ensemble = False
  single = np.asarray(
      proxy_reward.load_reward_fn(cfg, str(tmp_path / 'plain'))(
          np.zeros((16, 16), np.float32), ensemble.reference_actions(4, 3)
      )
  )
  p2 = jax.tree_util.tree_map(lambda x: x[2], params)
  want = model_lib.score(
      model,
      p2,
      model_lib.encode(model, p2, np.zeros((16, 16), np.float32)),
      ensemble.reference_actions(4, 3),
  )
  np.testing.assert_allclose(single, want, rtol=1e-5, atol=1e-6)


def test_ensemble_mean_rewards_by_hand_and_free_of_seed_offsets():
  """predict.ensemble_mean_rewards (the leave-one-scene-out reward): the
  mean over seeds of each seed's z-score against the reference set; a seed
  moved by scale * r + offset leaves it alone; one seed keeps its order."""
  model, params = _stacked_params()
  cfg = _tiny_model_config()
  jh = np.random.default_rng(4).uniform(size=(16, 16)).astype(np.float32)
  actions = ensemble.reference_actions(4, 30, seed=7)
  got = predict.ensemble_mean_rewards(params, cfg, jh, actions)
  raw = predict.every_seed_rewards(params, cfg, jh, actions)
  ref = predict.every_seed_rewards(
      params, cfg, jh, ensemble.reference_actions(4)
  )
  want = np.mean(
      (raw - ref.mean(1, keepdims=True)) / ref.std(1, keepdims=True), 0
  )
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  moved = predict.ensemble_mean_rewards(
      _shift_head(params, 0, 100.0, 3.0), cfg, jh, actions
  )
  np.testing.assert_allclose(moved, got, rtol=1e-3, atol=1e-3)
  one = jax.tree_util.tree_map(lambda x: x[1:2], params)
  np.testing.assert_array_equal(
      np.argsort(predict.ensemble_mean_rewards(one, cfg, jh, actions)),
      np.argsort(raw[1]),
  )
