"""Per-label compositing weights from the ray cache."""

import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import cached_render, camera, ray_cache, render_settings
from rlhf_tf.render.histogram import JHAxes


def _two_label_slab():
  """8^3 constant-HU volume whose front half (low y) is label 1, back 0."""
  hu = np.full((8, 8, 8), 100.0, np.float32)
  labels = np.zeros((8, 8, 8), np.uint8)
  labels[:, :4, :] = 1
  return hu, labels


def _render(alpha):
  hu, labels = _two_label_slab()
  spacing = (1.0, 1.0, 1.0)
  axes = JHAxes(hu_min=-1000.0, hu_max=1000.0, grad_max=10.0)
  # The default head view looks from -y (anterior) towards +y.
  cam = camera.head_camera(
      hu.shape, spacing, width=8, height=8, projection='orthographic'
  )
  settings = render_settings.RenderSettings(step_mm=0.5, shading=False)
  cache = ray_cache.build_ray_cache(
      hu, None, spacing, axes, cam, 4, settings, labels=labels
  )
  table = jnp.zeros((4, 4, 4)).at[..., :3].set(1.0).at[..., 3].set(alpha)
  rgba = cached_render.render_cached(cache, table, settings)
  same, weights, hits = cached_render.render_cached_labels(
      cache, table, 2, settings
  )
  np.testing.assert_allclose(same, rgba, atol=1e-6)
  return np.asarray(rgba), np.asarray(weights), np.asarray(hits)


def test_weights_sum_to_the_pixel_opacity_and_split_front_to_back():
  rgba, weights, hits = _render(alpha=0.3)
  np.testing.assert_allclose(weights.sum(-1), rgba[..., 3], atol=1e-5)
  centre = (4, 4)
  assert hits[centre].all()
  # Front label 1 covers 4 mm at alpha 0.3 per mm: 1 - 0.7^4 of the pixel,
  # up to half a step (0.25 mm): samples sit at the midpoints of the view's
  # fixed depth grid, not of segments starting at the voxel faces, and take
  # their nearest voxel's label. The back label gets what is left times its
  # own 1 - 0.7^(8 - front length).
  front_mm = np.log1p(-weights[centre][1]) / np.log(0.7)
  assert abs(front_mm - 4.0) <= 0.25 + 1e-4, front_mm
  np.testing.assert_allclose(
      weights[centre][0],
      (1 - weights[centre][1]) * (1 - 0.7 ** (8.0 - front_mm)),
      atol=1e-4,
  )


def test_transparent_tf_gives_zero_weights_but_keeps_hits():
  _, weights, hits = _render(alpha=0.0)
  assert np.all(weights == 0)
  assert hits[..., 0].sum() == hits[..., 1].sum() > 0
