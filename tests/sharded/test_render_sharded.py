"""Rendering many actions split over devices equals the 1-device renders."""

import functools

import jax
import numpy as np

from rlhf_tf.data import phantom
from rlhf_tf.preferences import scenes
from rlhf_tf.render import histogram
from rlhf_tf.render import polygon

ATOL = 1e-6  # float32 rounding; values in [0, 1]


@functools.lru_cache(maxsize=None)
def _scene():
  volume = phantom.make_head_phantom(jax.random.key(0), (24, 24, 24))
  hist = histogram.default_config()
  hist.bins = 32
  render = scenes.default_config()
  render.image_size = 12
  return scenes.build_scene('sharded', volume, hist, render)


def _actions(num):
  scene = _scene()
  rand = np.asarray(polygon.random_actions(jax.random.key(5), num - 2, 4))
  return np.concatenate([scene.experts[:2], rand]).astype(np.float32)


def test_render_many_sharded_equals_scene_render(mesh):
  scene, actions = _scene(), _actions(11)  # 11: a padded last chunk
  images = scene.render_many(actions, mesh=mesh)
  assert images.shape == (11, 12, 12, 4)
  for i in range(11):
    np.testing.assert_allclose(images[i], np.asarray(scene.render(actions[i])),
                               atol=ATOL, rtol=0)
  assert images[..., 3].max() > 0.1  # something visible was compared


def test_tissue_weights_sharded_equal_render_tissues(mesh):
  scene, actions = _scene(), _actions(6)
  starts = []
  for start, (rgba, weights, hits) in scene.iter_render_many(
      actions, tissue_weights=True, mesh=mesh, per_device=1):
    starts.append(start)
    for k in range(rgba.shape[0]):
      ref = scene.render_tissues(actions[start + k])
      for got, want in zip((rgba[k], weights[k], hits[k]), ref):
        np.testing.assert_allclose(got, np.asarray(want), atol=ATOL, rtol=0)
  assert starts == list(range(0, 6, mesh.devices.size))
