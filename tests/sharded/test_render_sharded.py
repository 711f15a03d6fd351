"""Rendering many actions split over devices equals the 1-device renders."""

import functools

import jax
import numpy as np

from rlhf_tf.data import phantom
from rlhf_tf.preferences import scenes
from rlhf_tf.render import cached_render, histogram, polygon, ray_cache

ATOL = 1e-6  # float32 rounding; values in [0, 1]


def _hist_config():
  hist = histogram.default_config()
  hist.bins = 32
  return hist


@functools.lru_cache(maxsize=None)
def _scene():
  volume = phantom.make_head_phantom(jax.random.key(0), (24, 24, 24))
  render = scenes.default_config()
  render.image_size = 12
  return scenes.build_scene('sharded', volume, _hist_config(), render)


def _actions(num):
  scene = _scene()
  rand = np.asarray(polygon.random_actions(jax.random.key(5), num - 2, 4))
  return np.concatenate([scene.experts[:2], rand]).astype(np.float32)


def test_render_many_sharded_equals_scene_render(mesh):
  scene, actions = _scene(), _actions(11)  # 11: a padded last chunk
  images = scene.render_many(actions, mesh=mesh)
  assert images.shape == (11, 12, 12, 4)
  for i in range(11):
    np.testing.assert_allclose(
        images[i], np.asarray(scene.render(actions[i])), atol=ATOL, rtol=0
    )
  assert images[..., 3].max() > 0.1  # something visible was compared


def test_tissue_weights_sharded_equal_render_tissues(mesh):
  scene, actions = _scene(), _actions(6)
  starts = []
  for start, (rgba, weights, hits) in scene.iter_render_many(
      actions, tissue_weights=True, mesh=mesh, per_device=1
  ):
    starts.append(start)
    for k in range(rgba.shape[0]):
      ref = scene.render_tissues(actions[start + k])
      for got, want in zip((rgba[k], weights[k], hits[k]), ref):
        np.testing.assert_allclose(got, np.asarray(want), atol=ATOL, rtol=0)
  assert starts == list(range(0, 6, mesh.devices.size))


def test_ray_cache_build_split_over_rays_equals_one_device(mesh):
  scene = _scene()
  volume = scene.volume
  common = (
      volume.hu,
      None,
      volume.spacing,
      scene.jh.axes,
      scene.camera,
      scene.bins,
      scene.settings,
  )
  one = ray_cache.build_ray_cache(*common, labels=scene.groups)
  split = ray_cache.build_ray_cache(*common, labels=scene.groups, mesh=mesh)
  for a, b in ((one.tiles, split.tiles),):
    for name in (
        'pixels',
        'length',
        'first_chunk',
        'num_chunks',
        'idx',
        'label',
    ):  # exactly the same
      np.testing.assert_array_equal(getattr(b, name), getattr(a, name))
    for name in ('fx', 'fy', 'diffuse', 'specular'):
      # uint16 fixed point: float32 rounding of the sample positions in
      # tiles of another size may move a weight by one step (1 / 65535).
      diff = np.abs(
          np.asarray(getattr(b, name), np.int32)
          - np.asarray(getattr(a, name), np.int32)
      )
      assert diff.max() <= 1 and np.mean(diff > 0) < 1e-2, name
  table = scene.tf_table(scene.experts[0])
  np.testing.assert_allclose(
      np.asarray(cached_render.render_cached(split, table, scene.settings)),
      np.asarray(cached_render.render_cached(one, table, scene.settings)),
      atol=1e-5,
      rtol=0,
  )


def test_build_scene_on_a_mesh_gives_the_one_device_cache(mesh):
  """Jobs build a scene's ray cache split over rays (dataset.ensure_scene's
  mesh); the scene then holds it whole on one device, as without a mesh."""
  one = _scene()
  render = scenes.default_config()
  render.image_size = 12
  split = scenes.build_scene(
      'sharded', one.volume, _hist_config(), render, mesh=mesh
  )
  for leaf in jax.tree_util.tree_leaves(split.cache):
    assert len(leaf.sharding.device_set) == 1
  table = one.tf_table(one.experts[0])
  np.testing.assert_allclose(
      np.asarray(split.render(one.experts[0])),
      np.asarray(one.render(one.experts[0])),
      atol=1e-5,
      rtol=0,
  )
  np.testing.assert_allclose(
      np.asarray(cached_render.render_cached(split.cache, table, one.settings)),
      np.asarray(cached_render.render_cached(one.cache, table, one.settings)),
      atol=1e-5,
      rtol=0,
  )
