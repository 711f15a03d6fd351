"""Tests of reward-model probing: random rewards, corner maps, gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reward_testing import BINS, tiny_model

from rlhf_tf.data import phantom
from rlhf_tf.evaluation import probing, probing_gradients
from rlhf_tf.preferences import scenes
from rlhf_tf.render import histogram, polygon_validation
from rlhf_tf.render import polygon as polygon_lib


@pytest.fixture(scope='module')
def tiny():
  """(model, params, jh) of reward_testing.tiny_model with its parameters x2 on
  every leaf: the 5 action-path layers scale dr/da by ~2^5, so that float32
  finite differences resolve the gradient (PyTorch-style init gives
  |dr/da| ~ 1e-4 on this tiny model)."""
  model, params, jh = tiny_model()
  return model, jax.tree_util.tree_map(lambda x: 2.0 * x, params), jh


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, params, jh, actions):
  return model.apply({'params': params}, jh, actions)


def _reward(tiny, actions):
  """Reference r(JH, a) [N] through the module's __call__ (eval mode)."""
  model, params, jh = tiny
  return np.asarray(
      _apply(model, params, jh, jnp.asarray(actions, jnp.float32))
  )


def test_random_action_rewards_match_per_action_loop(tiny):
  model, params, jh = tiny
  key = jax.random.key(7)
  actions, rewards = probing.random_action_rewards(
      model, params, jh, key, num=100
  )
  assert actions.shape == (100, 4, 2) and rewards.shape == (100,)
  np.testing.assert_array_equal(
      actions, polygon_lib.random_actions(key, 100, 4)
  )
  for i in (0, 13, 57, 99):
    np.testing.assert_allclose(
        rewards[i], _reward(tiny, actions[i : i + 1])[0], rtol=1e-5, atol=1e-6
    )
  # chunked (with a zero-padded last chunk) gives the same numbers.
  a2, r2 = probing.random_action_rewards(
      model, params, jh, key, num=100, chunk=32
  )
  np.testing.assert_array_equal(a2, actions)
  np.testing.assert_allclose(r2, rewards, rtol=1e-5, atol=1e-6)
  assert float(jnp.std(rewards)) > 0


def _pixel(i, j, grid=BINS):
  """(x, y) centre of JH pixel row i (y), column j (x)."""
  return ((j + 0.5) / grid, (i + 0.5) / grid)


def test_corner_maps_at_base_vertices_equal_base_reward(tiny):
  model, params, jh = tiny
  cells = [(2, 3), (3, 12), (12, 13), (11, 2)]  # (row i, column j)
  base = np.array([_pixel(i, j) for i, j in cells], np.float32)
  maps = probing.corner_maps(model, params, jh, base, chunk=100)
  assert maps.shape == (4, BINS, BINS)
  base_r = _reward(tiny, base[None])[0]
  for k, (i, j) in enumerate(cells):
    np.testing.assert_allclose(maps[k, i, j], base_r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        probing.corner_value_at(maps, k, base[k]), base_r, rtol=1e-5, atol=1e-6
    )
  # off the base: row = y, column = x, the other vertices fixed.
  for k, (i, j) in [(0, (9, 1)), (2, (0, 15)), (3, (14, 6))]:
    moved = base.copy()
    moved[k] = _pixel(i, j)
    np.testing.assert_allclose(
        maps[k, i, j], _reward(tiny, moved[None])[0], rtol=1e-5, atol=1e-6
    )
  unchunked = probing.corner_maps(model, params, jh, base, chunk=None)
  np.testing.assert_allclose(unchunked, maps, rtol=1e-5, atol=1e-6)
  assert float(jnp.std(maps[1])) > 0


def test_corner_maps_other_grid_and_value_lookup(tiny):
  model, params, jh = tiny
  base = np.array(
      [_pixel(1, 1, 8), _pixel(1, 6, 8), _pixel(6, 6, 8), _pixel(6, 1, 8)],
      np.float32,
  )
  maps = probing.corner_maps(model, params, jh, base, grid=8)
  assert maps.shape == (4, 8, 8)
  moved = base.copy()
  moved[1] = _pixel(4, 2, 8)
  want = _reward(tiny, moved[None])[0]
  np.testing.assert_allclose(maps[1, 4, 2], want, rtol=1e-5, atol=1e-6)
  # nearest pixel: any point inside pixel (4, 2) reads the same value.
  np.testing.assert_allclose(
      probing.corner_value_at(maps, 1, (2.9 / 8, 4.05 / 8)),
      want,
      rtol=1e-5,
      atol=1e-6,
  )
  np.testing.assert_allclose(
      probing.corner_value_at(maps, 1, (1.0, 1.0)), maps[1, 7, 7]
  )


def _central_fd(f, x, h):
  x = np.asarray(x, np.float32)
  out = np.zeros(x.shape)
  for idx in np.ndindex(x.shape):
    e = np.zeros_like(x)
    e[idx] = h
    out[idx] = (float(f(x + e)) - float(f(x - e))) / (2 * h)
  return out


def test_reward_gradient_matches_finite_differences(tiny):
  action = np.array(
      [[0.2, 0.3], [0.7, 0.25], [0.75, 0.8], [0.3, 0.7]], np.float32
  )
  model, params, jh = tiny
  g = np.asarray(probing_gradients.reward_gradient(model, params, jh, action))
  fd = _central_fd(lambda a: _reward(tiny, a[None])[0], action, 1e-3)
  assert g.shape == (4, 2) and np.max(np.abs(g)) > 1e-3
  np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-3 * np.abs(g).max())


def test_reward_ascent_increases_rewards(tiny):
  model, params, jh = tiny
  out = probing_gradients.reward_ascent(
      model, params, jh, jax.random.key(3), num_starts=8, steps=60, lr=0.02
  )
  final, init = np.asarray(out['rewards']), np.asarray(out['initial_rewards'])
  assert out['actions'].shape == (8, 4, 2) and out['history'].shape == (60, 8)
  assert final.mean() > init.mean() + 1e-3
  assert final.max() > init.max()
  assert int(out['best_index']) == int(np.argmax(final))
  acts = np.asarray(out['actions'])
  assert acts.min() >= 0.0 and acts.max() <= 1.0
  np.testing.assert_array_equal(polygon_lib.canonicalize(acts), acts)
  area = np.asarray(polygon_lib.polygon_area(acts))
  np.testing.assert_allclose(out['area'], area, rtol=1e-6, atol=1e-7)
  assert np.all(area >= 0)  # counter-clockwise (or collapsed on a border)
  for s in np.flatnonzero(area > 1e-3):
    assert polygon_validation.is_simple(acts[s])
  np.testing.assert_allclose(final, _reward(tiny, acts), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out['history'][-1], final, rtol=1e-6)


@pytest.fixture(scope='module')
def scene():
  volume = phantom.make_head_phantom(jax.random.key(0), (24, 24, 24))
  hist = histogram.default_config()
  hist.bins = 32
  render = scenes.default_config()
  render.image_size = 12
  render.tau = 0.05  # smooth TF edges: finite differences are meaningful
  return scenes.build_scene('probe', volume, hist, render)


@pytest.mark.parametrize('objective', ['mean_alpha', 'mean_luminance'])
def test_image_objective_gradient_matches_finite_differences(scene, objective):
  v = np.asarray(scene.experts[0], np.float32)
  value, g = probing_gradients.image_objective_gradient(scene, v, objective)
  f = probing_gradients.IMAGE_OBJECTIVES[objective]
  assert float(value) == pytest.approx(float(f(scene.render(v))), rel=1e-6)
  g = np.asarray(g)
  fd = _central_fd(lambda a: f(scene.render(jnp.asarray(a))), v, 3e-3)
  big = np.abs(fd) > 0.1 * np.abs(fd).max()
  assert big.any() and np.abs(fd).max() > 1e-2
  rel = np.abs(g - fd)[big] / np.abs(fd)[big]
  assert rel.max() < 0.1, (g, fd)
  np.testing.assert_allclose(g, fd, atol=0.05 * np.abs(fd).max())


def test_image_objective_callable_and_unknown_name(scene):
  v = np.asarray(scene.experts[0], np.float32)
  a = probing_gradients.image_objective_gradient(scene, v, 'mean_alpha')
  b = probing_gradients.image_objective_gradient(
      scene, v, lambda rgba: jnp.mean(rgba[..., 3])
  )
  np.testing.assert_allclose(a[0], b[0])
  np.testing.assert_allclose(a[1], b[1])
  with pytest.raises(ValueError, match='unknown objective'):
    probing_gradients.image_objective_gradient(scene, v, 'sharpness')
