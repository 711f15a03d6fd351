"""The fixed sample grid (no seam), pre-integrated classification, empty-space
skipping and early ray termination of the renderer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import ray_cache
from rlhf_tf.render import raymarch
from rlhf_tf.render import sampling
from rlhf_tf.render import skipping
from rlhf_tf.render.gradient import central_gradient
from rlhf_tf.render.histogram import JHAxes

from render_testing import AXES, SPACING, random_table, smooth_volume

SHELL_AXES = JHAxes(hu_min=-1000.0, hu_max=1000.0, grad_max=500.0)


def _shell(shape=(20, 20, 20), radius=6.0, width=0.8):
  """A thin spherical shell (~0 HU, ~2 voxels thick) in air (-1000 HU),
  centred in the box, the border voxels all air."""
  centre = (np.asarray(shape) - 1) / 2.0
  grids = np.meshgrid(*[np.arange(n) - c for n, c in zip(shape, centre)],
                      indexing='ij')
  dist = np.sqrt(sum(g ** 2 for g in grids))
  return (1000.0 * np.exp(-((dist - radius) / width) ** 2) - 1000.0).astype(
      np.float32)


def _sharp_table(bins=32):
  """Opaque-ish (alpha 0.7) above -200 HU, nothing below: a step TF."""
  t = np.zeros((bins, bins, 4), np.float32)
  t[..., :3] = (0.9, 0.8, 0.7)
  t[:, int(0.4 * bins):, 3] = 0.7
  return jnp.asarray(t)


def _oblique_camera(size=24):
  """Orthographic, looking down 25 degrees onto the (unpadded) shell volume:
  rays enter through the front (y) face below a horizontal image row and
  through the top (z) face above it."""
  return camera_lib.orbit_camera((20, 20, 20), (1.0, 1.0, 1.0), 0.0, 25.0,
                                 width=size, height=size)


def test_grid_depths_are_the_same_for_every_ray():
  cam = camera_lib.orbit_camera((20, 20, 20), (1.0, 1.0, 1.0), 20.0, 25.0,
                                width=16, height=16, projection='perspective')
  o, d = camera_lib.generate_rays(cam)
  fwd = cam.basis()[0]
  lo, hi = camera_lib.volume_box((20, 20, 20), (1.0, 1.0, 1.0))
  t_first, ray_step, start, length = sampling.ray_grid(o, d, fwd, lo, hi, 0.7)
  t0, _ = sampling.intersect_box(o, d, lo, hi)
  hit = np.asarray(length) > 0
  # Rays enter through different faces (different entry depths)...
  entry_depth = np.asarray(t0 * jnp.sum(d * fwd, -1))[hit]
  assert np.ptp(entry_depth) > 3.0
  # ...but every grid point lies on a depth plane (k + 1/2) * step.
  depth = (t_first[..., None] + jnp.arange(5) * ray_step[..., None]) * jnp.sum(
      d * fwd, -1)[..., None]
  frac = np.asarray(depth / 0.7 - 0.5)[hit]
  np.testing.assert_allclose(frac, np.round(frac), atol=2e-4)
  assert np.all(np.asarray(start) >= 0)
  assert np.all(np.asarray(start) < np.asarray(ray_step) + 1e-6)


@pytest.mark.parametrize('substeps', [1, 4])
def test_padding_with_air_does_not_move_the_samples(substeps):
  """No seam: the sample positions do not depend on where a ray enters the
  box, so growing the box (edge-padding the volume with air on the top and
  the far sides) leaves the thin shell's image unchanged. With samples
  placed from the box entry, the shell's rings would shift where rays now
  enter through another face."""
  hu = _shell()
  padded = np.pad(hu, ((0, 7), (0, 5), (0, 3)), mode='edge')
  cam = _oblique_camera()
  settings = raymarch.RenderSettings(step_mm=0.9, reference_step_mm=0.9,
                                     shading=True, tile_rays=64,
                                     substeps=substeps)
  table = _sharp_table()
  spacing = (1.0, 1.0, 1.0)
  images = [raymarch.render(jnp.asarray(v), None, spacing, SHELL_AXES, table,
                            cam, settings) for v in (hu, padded)]
  assert float(images[0][..., 3].max()) > 0.5
  np.testing.assert_allclose(images[1], images[0], atol=2e-5)
  caches = [ray_cache.build_ray_cache(jnp.asarray(v), None, spacing,
                                      SHELL_AXES, cam, 32, settings)
            for v in (hu, padded)]
  cached = [ray_cache.render_cached(c, table, settings) for c in caches]
  np.testing.assert_allclose(cached[1], cached[0], atol=2e-5)
  np.testing.assert_allclose(cached[0], images[0], atol=2e-4)


def test_pre_integration_converges_to_the_fine_step():
  """More classification points per segment bring the sharp-TF image of the
  thin shell closer to a rendering at 1/8 of the step (rings shrink; what
  is left is the volume sampled only at the grid points)."""
  hu = jnp.asarray(_shell())
  cam = _oblique_camera(20)
  table = _sharp_table()
  base = raymarch.RenderSettings(step_mm=1.0, reference_step_mm=1.0,
                                 shading=False, tile_rays=100, substeps=1)
  render = lambda s: raymarch.render(hu, None, (1.0, 1.0, 1.0), SHELL_AXES,
                                     table, cam, s)
  ref = render(base.replace(step_mm=0.125, substeps=8))
  err = [float(jnp.sqrt(jnp.mean((render(base.replace(substeps=m)) - ref)
                                 ** 2))) for m in (1, 4)]
  assert err[1] < 0.7 * err[0], err


def test_blocks_marked_empty_hold_only_transparent_segments():
  """Conservativeness of the skipping data: every classification point of a
  segment whose front grid point lies in an invisible block has TF opacity
  <= skip_alpha."""
  rng = np.random.default_rng(0)
  hu = smooth_volume((19, 17, 21), seed=3)
  packed = sampling.pack_volume(hu, central_gradient(hu, SPACING))
  table = np.zeros((16, 16, 4), np.float32)
  table[:, 12:14, 3] = rng.uniform(0.1, 1.0, (16, 2))  # Only > ~440 HU.
  table = jnp.asarray(table)
  visible = skipping.visible_blocks(skipping.block_ranges(packed, AXES, 4),
                                    table, 1e-6)
  assert 0 < int(visible.sum()) < visible.size
  step = 0.5
  stride = skipping.coarse_stride(SPACING, step, 4)
  lo, hi = camera_lib.volume_box(hu.shape, SPACING)
  n = 4000
  front = rng.uniform(lo, hi, (n, 3))
  d = rng.normal(size=(n, 3))
  d /= np.linalg.norm(d, axis=-1, keepdims=True)
  # The farthest end a coarse check covers: stride steps of up to 2 step_mm.
  back = front + d * stride * 2 * step * rng.uniform(0, 1, (n, 1))
  pts = jnp.asarray(np.stack([front, back], 1), jnp.float32)
  s = raymarch.sample_points(packed, hu.shape, SPACING, AXES, pts,
                             jnp.asarray(d, jnp.float32),
                             raymarch.RenderSettings(shading=False))
  xs = sampling.expand_segments(s['x'][:, :1], s['x'][:, 1:], 8)
  ys = sampling.expand_segments(s['y'][:, :1], s['y'][:, 1:], 8)
  alpha = sampling.bilinear_lookup(sampling.corner_table(table),
                                   *sampling.tf_coords(xs, ys, 16, 16))[..., 3]
  empty = ~np.asarray(skipping.point_visible(
      visible, hu.shape, 4, jnp.asarray(front / np.asarray(SPACING))))
  assert empty.sum() > 20 and (~empty).sum() > 100
  assert float(jnp.max(alpha[empty])) <= 1e-6


def test_skipping_and_termination_change_pixels_within_the_tolerance():
  """Forward shortcuts vs the exact march on the shell (much air, an opaque
  TF): every pixel within stop_transmittance (2^-10) plus the skipped
  opacity bound."""
  hu = jnp.asarray(_shell((24, 24, 24), radius=8.0))
  cam = camera_lib.orbit_camera(hu.shape, (1.0, 1.0, 1.0), 30.0, 20.0,
                                width=24, height=24)
  table = _sharp_table().at[:, 13:, 3].set(0.95)
  fast = raymarch.RenderSettings(step_mm=0.5, tile_rays=64, chunk_segments=4,
                                 block_voxels=4)
  exact = fast.replace(skip_alpha=-1.0, stop_transmittance=0.0)
  spans = []
  for s in (fast, exact):
    spans.append(raymarch.render(hu, None, (1.0, 1.0, 1.0), SHELL_AXES, table,
                                 cam, s))
  assert float(spans[1][..., 3].max()) > 0.99
  np.testing.assert_allclose(spans[0], spans[1], atol=2.0 ** -10 + 1e-5)
  packed = sampling.pack_volume(hu, central_gradient(hu, (1.,) * 3))
  np.testing.assert_allclose(
      raymarch._render_exact(packed, (1.0, 1.0, 1.0), SHELL_AXES, table, cam,
                             fast), spans[1], atol=5e-5)


def test_ray_spans_skip_the_air_in_front():
  hu = jnp.asarray(_shell((24, 40, 24), radius=8.0))  # 11 mm of air first.
  packed = sampling.pack_volume(hu, central_gradient(hu, (1.,) * 3))
  cam = camera_lib.orbit_camera(hu.shape, (1.0, 1.0, 1.0), 0.0, 0.0,
                                width=8, height=8)
  settings = raymarch.RenderSettings(step_mm=0.5, block_voxels=2)
  table = _sharp_table()
  m = raymarch._March(packed, (1.0, 1.0, 1.0), SHELL_AXES, table, cam,
                      settings)
  o, d = camera_lib.generate_rays(cam)
  o, d = o.reshape(-1, 3), d.reshape(-1, 3)
  grid = m.grid(o, d)
  visible = skipping.visible_blocks(
      skipping.block_ranges(packed, SHELL_AXES, 2), table, 1e-6)
  first, end = skipping.ray_spans(o, d, grid, visible, m.shape, m.spacing,
                                  m.num, settings.step_mm, 2)
  count = sampling.segment_counts(grid)
  centre = 4 * 8 + 4  # The central ray meets the shell ~11 mm in.
  assert int(first[centre]) > 0
  assert int(end[centre] - first[centre]) < int(count[centre])
  assert np.all(np.asarray(end) <= np.asarray(count))


def test_fast_forward_is_differentiable_through_the_exact_march():
  hu = smooth_volume()
  cam = camera_lib.orbit_camera(hu.shape, SPACING, 25.0, 20.0, width=6,
                                height=6)
  table = random_table()
  settings = raymarch.RenderSettings(step_mm=1.1, tile_rays=16,
                                     sample_levels=1)
  g = jax.grad(lambda t: jnp.sum(raymarch.render(
      hu, None, SPACING, AXES, t, cam, settings)))(table)
  assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0
