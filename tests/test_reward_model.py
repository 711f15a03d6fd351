"""Tests of the reward model (paper Fig. 1): shapes, sizes, dropout masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhf_tf.reward import batch_rewards, train
from rlhf_tf.reward import data as data_lib
from rlhf_tf.reward import model as model_lib

BINS = 16
# Tiny model with 3-vertex polygons (n != 4 on purpose).
TINY = model_lib.RewardModel(
    conv_features=(4, 8),
    kernel=3,
    strides=(2, 2),
    input_pool=2,
    readout_pool=1,
    action_features=(8, 16),
    hidden=(16, 8),
    dropout=0.5,
    n_vertices=3,
)


@pytest.fixture(scope='module')
def params():
  return model_lib.init_params(TINY, jax.random.key(0), BINS)


def _inputs(n=5, seed=1):
  rng = np.random.default_rng(seed)
  jh = jnp.asarray(rng.random((BINS, BINS)), jnp.float32)
  actions = jnp.asarray(rng.random((n, 3, 2)), jnp.float32)
  return jh, actions


def test_output_shape_and_param_count(params):
  jh, actions = _inputs(7)
  r = TINY.apply({'params': params}, jh, actions)
  assert r.shape == (7,) and r.dtype == jnp.float32
  # By hand: JH 16 -> pool 2 -> 8 -> conv s2 -> 4 -> conv s2 -> 2; F = 2*2*8.
  conv = (3 * 3 * 1 * 4 + 4) + (3 * 3 * 4 * 8 + 8)
  action = (6 * 8 + 8) + (8 * 16 + 16)
  fused = (2 * 2 * 8 + 16) * 16 + 16  # Dense on concat [f; g]
  dense = (16 * 8 + 8) + (8 * 1 + 1)
  assert model_lib.count_params(params) == conv + action + fused + dense
  assert (
      model_lib.expected_param_count(TINY, BINS)
      == conv + action + fused + dense
  )
  assert model_lib.image_feature_size(TINY, BINS) == 32


def test_split_fused_layer_equals_dense_on_concatenation(params):
  jh, actions = _inputs(4)
  bound = TINY.bind({'params': params})
  f = bound.image_features(jh, False)  # [F]
  g = 2 * actions.reshape(4, -1) - 1
  for name in ('action_0', 'action_1'):
    p = params[name]
    g = jax.nn.relu(g @ p['kernel'] + p['bias'])
  w = jnp.concatenate(
      [params['fuse_image']['kernel'], params['fuse_action']['kernel']]
  )
  x = jnp.concatenate([jnp.broadcast_to(f, (4, f.shape[0])), g], axis=1)
  h = jax.nn.relu(x @ w + params['fuse_image']['bias'])
  h = jax.nn.relu(h @ params['hidden_1']['kernel'] + params['hidden_1']['bias'])
  r = (h @ params['head']['kernel'] + params['head']['bias'])[:, 0]
  np.testing.assert_allclose(
      TINY.apply({'params': params}, jh, actions), r, rtol=1e-5, atol=1e-6
  )


def test_dropout_on_in_training_off_in_eval(params):
  jh, actions = _inputs(6)
  train_out = [
      TINY.apply(
          {'params': params},
          jh,
          actions,
          True,
          rngs={'dropout': jax.random.key(k)},
      )
      for k in (1, 2)
  ]
  assert not np.allclose(train_out[0], train_out[1])
  eval_out = [TINY.apply({'params': params}, jh, actions) for _ in range(2)]
  np.testing.assert_array_equal(eval_out[0], eval_out[1])
  assert not np.allclose(eval_out[0], train_out[0])
  with pytest.raises(ValueError, match='dropout rng'):
    model_lib.encode(TINY, params, jh, train=True)


def test_same_dropout_mask_for_both_members_of_a_pair(params):
  jh, actions = _inputs(4)
  # Two scenes; pairs compare an action with itself (and two real pairs).
  data = data_lib.from_examples(
      [np.asarray(jh), np.asarray(jh)[::-1]],
      [np.asarray(actions), np.asarray(actions)],
      [(0, 1, 1, 0.5), (1, 2, 2, 0.5), (0, 0, 3, 1.0), (1, 3, 0, 0.0)],
  )
  data = jax.tree_util.tree_map(jnp.asarray, data)
  idx = jnp.arange(4)
  for k in range(3):
    rl, rr = batch_rewards.pair_rewards(
        TINY, params, data, idx, True, jax.random.key(k)
    )
    assert float(rl[0] - rr[0]) == 0.0 and float(rl[1] - rr[1]) == 0.0
    assert float(rl[2] - rr[2]) != 0.0
  # The naive way (one encoder pass per member) draws two masks.
  jhs = jnp.stack([jh, jh])
  z = model_lib.encode(TINY, params, jhs, True, jax.random.key(0))
  r = model_lib.score(TINY, params, z, jnp.stack([actions[1], actions[1]]))
  assert float(r[0] - r[1]) != 0.0


def test_encode_once_matches_per_action_call(params):
  jh, actions = _inputs(5)
  z = model_lib.encode(TINY, params, jh)
  r = model_lib.score(TINY, params, z, actions)
  per = [
      TINY.apply({'params': params}, jh, actions[i : i + 1])[0]
      for i in range(5)
  ]
  np.testing.assert_allclose(r, np.array(per), rtol=1e-5, atol=1e-6)


def test_rejects_wrong_vertex_count(params):
  jh, _ = _inputs()
  with pytest.raises(ValueError, match='actions must be'):
    TINY.apply({'params': params}, jh, jnp.zeros((2, 4, 2)))


def test_default_model_sizes():
  config = train.default_config()
  m = model_lib.model_from_config(config.model)
  feat, act = model_lib.shapes_summary(m, 256)
  assert (feat, act) == (512, 512)  # balanced image / action features
  p = model_lib.init_params(m, jax.random.key(0), 256)
  assert model_lib.count_params(p) == model_lib.expected_param_count(m, 256)


COVER = model_lib.RewardModel(
    conv_features=(4, 8),
    kernel=3,
    strides=(2, 2),
    input_pool=2,
    readout_pool=1,
    action_features=(8, 16),
    hidden=(16, 8),
    dropout=0.5,
    n_vertices=3,
    coverage_grid=8,
    coverage_features=2,
    coverage_tau=0.02,
)


def test_coverage_features_count_and_closed_form():
  """c = mean over the grid of the soft polygon indicator times the maps;
  channel 0 is the avg-pooled JH, so with a JH of ones c_0 of a triangle is
  its area (up to the sigmoid edge)."""
  params = model_lib.init_params(COVER, jax.random.key(0), BINS)
  assert model_lib.count_params(params) == model_lib.expected_param_count(
      COVER, BINS
  )
  jh, actions = _inputs(6)
  bound = COVER.bind({'params': params})
  z = bound.encode_jh(jh)
  assert z.shape == (16 + 8 * 8 * 3,)
  # The scores are the batched ones, per action too.
  r = model_lib.score(COVER, params, z, actions)
  per = [
      COVER.apply({'params': params}, jh, actions[i : i + 1])[0]
      for i in range(6)
  ]
  np.testing.assert_allclose(r, np.array(per), rtol=1e-5, atol=1e-6)
  ones = bound.encode_jh(jnp.ones((BINS, BINS)))
  triangle = jnp.array([[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]])  # area 1/8
  _, c = bound.coverage(ones, triangle)
  assert c.shape == (1, 3)
  np.testing.assert_allclose(c[0, 0], 1 / 8, atol=0.02)
  # A polygon off the JH's mass covers none of it.
  empty = jnp.zeros((BINS, BINS)).at[:4, :4].set(1.0)
  far = jnp.array([[[0.6, 0.6], [0.9, 0.6], [0.9, 0.9]]])
  _, c = bound.coverage(bound.encode_jh(empty), far)
  assert float(c[0, 0]) < 1e-3


def test_coverage_reward_gradient_matches_finite_differences():
  params = model_lib.init_params(COVER, jax.random.key(1), BINS)
  jh, actions = _inputs(1, seed=3)
  action = jnp.asarray([[0.2, 0.3], [0.7, 0.25], [0.45, 0.8]], jnp.float32)
  z = model_lib.encode(COVER, params, jh)

  def reward(a):
    return model_lib.score(COVER, params, z, a[None])[0]

  grad = np.asarray(jax.grad(reward)(action))
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
  eps = 1e-3
  for i, j in [(0, 0), (1, 1), (2, 0)]:
    up = float(reward(action.at[i, j].add(eps)))
    down = float(reward(action.at[i, j].add(-eps)))
    np.testing.assert_allclose(
        grad[i, j], (up - down) / (2 * eps), rtol=0.05, atol=2e-3
    )
  # Degenerate (all-zero) padding actions stay finite too.
  assert np.isfinite(float(reward(jnp.zeros((3, 2)))))
