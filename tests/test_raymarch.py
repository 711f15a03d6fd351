"""Tests for the raymarcher, compositing and the ray-sample cache.

Closed forms (homogeneous slab, empty TF, sphere silhouette with anisotropic
voxels), finite differences in float64, and cross-checks between the direct,
naive (map_coordinates) and cached paths. Tiny shapes: CPU time matters.
"""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest
from render_testing import AXES, random_table, smooth_volume, SPACING

from rlhf_tf.data.volume import make_volume
from rlhf_tf.render import (
    cached_render,
    compositing,
    ray_cache,
    raymarch,
    raymarch_naive,
    render_settings,
    sampling,
)
from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render.gradient import central_gradient
from rlhf_tf.render.histogram import JHAxes


def _camera(shape, size=8, projection='perspective', **kw):
  return camera_lib.orbit_camera(
      shape,
      SPACING,
      25.0,
      20.0,
      width=size,
      height=size,
      projection=projection,
      **kw,
  )


SETTINGS = render_settings.RenderSettings(
    step_mm=1.1, tile_rays=16, sample_levels=2, background=(0.1, 0.2, 0.3)
)
GRAD_SETTINGS = SETTINGS.replace(sample_levels=1)  # Shorter compiles.


# ---------------------------------------------------------------- compositing


def test_composite_matches_hand_loop():
  rng = np.random.default_rng(1)
  rgb = rng.uniform(size=(3, 7, 3))
  alpha = rng.uniform(size=(3, 7))
  alpha[0, 2], alpha[1, 0], alpha[2, 4] = 1.0, 0.0, 1.0
  out_rgb, acc = compositing.composite(
      jnp.asarray(rgb, jnp.float32), jnp.asarray(alpha, jnp.float32)
  )
  for r in range(3):
    trans, c = 1.0, np.zeros(3)
    for i in range(7):
      c += trans * alpha[r, i] * rgb[r, i]
      trans *= 1.0 - alpha[r, i]
    np.testing.assert_allclose(out_rgb[r], c, atol=2e-6)
    np.testing.assert_allclose(acc[r], 1.0 - trans, atol=2e-6)


def test_composite_gradients_match_finite_differences():
  rng = np.random.default_rng(2)
  with jax.enable_x64(True):
    rgb = jnp.asarray(rng.uniform(size=(2, 5, 3)))
    alpha = jnp.asarray(rng.uniform(0.05, 0.95, size=(2, 5)))
    check_grads(
        compositing.composite,
        (rgb, alpha),
        order=2,
        modes=('fwd', 'rev'),
        eps=1e-6,
    )


def test_safe_helpers_have_finite_gradients_at_the_edges():
  g = jax.grad(lambda a: compositing.safe_log1m(a).sum())(jnp.array([0.0, 1.0]))
  assert np.all(np.isfinite(g))
  zero = jnp.zeros(3)
  for fn in (
      lambda v: compositing.safe_normalize(v, 1e-3).sum(),
      lambda v: compositing.safe_pow(v, 16.0).sum(),
  ):
    assert np.all(np.isfinite(jax.grad(fn)(zero)))
  _, acc = compositing.composite(
      jnp.ones((4, 3)), jnp.array([0.2, 1.0, 0.5, 0.0])
  )
  assert float(acc) == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------- closed forms


@pytest.mark.parametrize('jitter', [False, True])
def test_constant_slab_transmittance_is_exact_in_float64(jitter):
  shape, a, ref, step = (6, 8, 6), 0.3, 1.0, 0.7  # step does not divide L.
  with jax.enable_x64(True):
    hu = jnp.full(shape, 100.0, jnp.float64)
    table = jnp.ones((4, 4, 4), jnp.float64) * jnp.array([0.2, 0.5, 0.9, a])
    cam = camera_lib.head_camera(
        shape, SPACING, width=4, height=4, ortho_width_mm=4.0
    )  # Rays along +y.
    settings = render_settings.RenderSettings(
        step_mm=step,
        reference_step_mm=ref,
        shading=False,
        tile_rays=8,
        jitter=jitter,
    )
    img = raymarch.render(hu, None, SPACING, AXES, table, cam, settings)
    depth = shape[1] * SPACING[1]
    sigma = -np.log1p(-a) / ref
    expected = -np.expm1(-sigma * depth)
    np.testing.assert_allclose(img[..., 3], expected, rtol=1e-12)
    np.testing.assert_allclose(img[..., 2], 0.9 * expected, rtol=1e-12)


def test_empty_tf_gives_exactly_the_background():
  hu = smooth_volume()
  table = random_table().at[..., 3].set(0.0)
  img = raymarch.render(
      hu, None, SPACING, AXES, table, _camera(hu.shape), SETTINGS
  )
  np.testing.assert_array_equal(
      img[..., :3],
      jnp.broadcast_to(
          jnp.array(SETTINGS.background, jnp.float32), img[..., :3].shape
      ),
  )
  np.testing.assert_array_equal(img[..., 3], 0.0)


def test_anisotropic_sphere_renders_round():
  shape, spacing, radius = (12, 24, 48), (2.0, 1.0, 0.5), 8.0
  lo, hi = camera_lib.volume_box(shape, spacing)
  centre = 0.5 * (lo + hi)
  grids = np.meshgrid(
      *[np.arange(n) * s - c for n, s, c in zip(shape, spacing, centre)],
      indexing='ij',
  )
  dist = np.sqrt(sum(g**2 for g in grids))
  hu = jnp.asarray(100.0 * (radius - dist), jnp.float32)  # 0 HU on the surface.
  table = jnp.zeros((64, 64, 4)).at[:, 32:].set(1.0)  # Opaque for x > 0.5.
  size, width_mm = 32, 24.0
  cam = camera_lib.head_camera(
      shape, spacing, size, size, ortho_width_mm=width_mm
  )
  settings = render_settings.RenderSettings(
      step_mm=0.5, shading=False, tile_rays=256
  )
  img = raymarch.render(
      hu, None, spacing, JHAxes(-2000.0, 2000.0, 200.0), table, cam, settings
  )
  mask = np.asarray(img[..., 3]) > 0.5
  pixel_mm = width_mm / size
  extent_x = mask.any(axis=0).sum() * pixel_mm  # Image columns: world x.
  extent_z = mask.any(axis=1).sum() * pixel_mm  # Image rows: world z.
  assert abs(extent_x - extent_z) <= 1.5 * pixel_mm
  assert abs(extent_x - 2 * radius) <= 2 * pixel_mm
  assert abs(extent_z - 2 * radius) <= 2 * pixel_mm


# -------------------------------------------------------------- cross-checks


@pytest.mark.parametrize(
    'shading,jitter,tensor',
    [
        (True, False, False),
        (False, False, False),
        (True, True, False),
        (True, False, True),
    ],
)
def test_naive_direct_and_cached_paths_agree(shading, jitter, tensor):
  hu = smooth_volume()
  table = random_table()
  cam = _camera(hu.shape)
  settings = SETTINGS.replace(
      shading=shading, jitter=jitter, tensor_normals=tensor
  )
  direct = raymarch.render(hu, None, SPACING, AXES, table, cam, settings)
  naive = raymarch_naive.render_naive(
      hu, None, SPACING, AXES, table, cam, settings
  )
  cache = ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, cam, 8, settings, num_buckets=3
  )
  cached = cached_render.render_cached(cache, table, settings)
  assert float(direct[..., 3].max()) > 0.3  # Something is visible.
  assert float(direct[..., 3].min()) == 0.0  # Some rays miss the box.
  np.testing.assert_allclose(naive, direct, atol=1e-5)
  np.testing.assert_allclose(cached, direct, atol=1e-4)
  if tensor:  # The setting is honoured: other terms than the mean gradient's.
    mean = raymarch.render(
        hu,
        None,
        SPACING,
        AXES,
        table,
        cam,
        settings.replace(tensor_normals=False),
    )
    assert float(jnp.abs(mean - direct).max()) > 1e-3
  # The cache dropped the rays that miss the box, and keeps per tile only
  # whole chunks up to its longest ray.
  tiles = cache.tiles
  assert int(np.sum(np.asarray(tiles.pixels) < 64)) < 64
  assert (
      int(np.max(tiles.num_chunks)) * ray_cache.CHUNK
      < sampling.num_samples(hu.shape, SPACING, settings.step_mm)
      + ray_cache.CHUNK
  )


def test_cache_rejects_mismatched_settings():
  hu = smooth_volume()
  cache = ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, _camera(hu.shape), 8, SETTINGS
  )
  with pytest.raises(ValueError, match='step_mm'):
    cached_render.render_cached(
        cache, random_table(), SETTINGS.replace(step_mm=0.5)
    )
  with pytest.raises(ValueError, match='bins'):
    cached_render.render_cached(cache, random_table(bins=6), SETTINGS)
  with pytest.raises(ValueError, match='tensor_normals'):
    cached_render.render_cached(
        cache, random_table(), SETTINGS.replace(tensor_normals=True)
    )


def test_packed_volume_in_slabs_equals_central_gradient():
  hu = smooth_volume((9, 5, 6))
  packed = sampling.packed_volume(hu, SPACING, slab=2)
  expected = sampling.pack_volume(hu, central_gradient(hu, SPACING))
  np.testing.assert_allclose(packed, expected, rtol=1e-6, atol=1e-4)


def test_render_volume_matches_render():
  hu = smooth_volume()
  vol = make_volume(np.asarray(hu), SPACING)
  table, cam = random_table(), _camera(hu.shape)
  np.testing.assert_allclose(
      raymarch.render_volume(vol, AXES, table, cam, SETTINGS),
      raymarch.render(hu, None, SPACING, AXES, table, cam, SETTINGS),
      atol=1e-6,
  )


def test_tile_size_does_not_change_the_result():
  hu = smooth_volume()
  table, cam = random_table(), _camera(hu.shape)
  a = raymarch.render(hu, None, SPACING, AXES, table, cam, SETTINGS)
  b = raymarch.render(
      None,
      None,
      SPACING,
      AXES,
      table,
      cam,
      SETTINGS.replace(tile_rays=5),
      packed=sampling.packed_volume(hu, SPACING),
  )
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_vmap_over_tf_tables_equals_a_loop():
  hu = smooth_volume()
  cam = _camera(hu.shape)
  tables = jnp.stack([random_table(seed=s) for s in range(3)])
  cache = ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, 8, SETTINGS)
  direct = jax.vmap(
      lambda t: raymarch.render(hu, None, SPACING, AXES, t, cam, SETTINGS)
  )(tables)
  cached = jax.vmap(lambda t: cached_render.render_cached(cache, t, SETTINGS))(
      tables
  )
  for i in range(3):
    one = raymarch.render(hu, None, SPACING, AXES, tables[i], cam, SETTINGS)
    np.testing.assert_allclose(direct[i], one, atol=1e-6)
    np.testing.assert_allclose(cached[i], one, atol=1e-4)


# ---------------------------------------------------------------- gradients


def test_gradients_match_finite_differences_float64():
  with jax.enable_x64(True):
    hu = smooth_volume((6, 6, 6), dtype=np.float64)
    table = random_table(bins=6, dtype=np.float64)
    cam = _camera(hu.shape, size=4)
    settings = GRAD_SETTINGS.replace(step_mm=1.5, tile_rays=8)
    render = lambda v, t: raymarch.render(
        v, None, SPACING, AXES, t, cam, settings
    )
    check_grads(render, (hu, table), order=1, modes=('rev',), eps=1e-6)
    cache = ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, 6, settings)
    check_grads(
        lambda t: cached_render.render_cached(cache, t, settings),
        (table,),
        order=1,
        modes=('rev',),
        eps=1e-6,
    )


def test_cached_gradient_equals_direct_gradient():
  hu = smooth_volume()
  table, cam = random_table(), _camera(hu.shape)
  cache = ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, 8, SETTINGS)
  loss = lambda img: jnp.sum(img[..., :3] * jnp.linspace(0, 1, 3))
  g_direct = jax.grad(
      lambda t: loss(
          raymarch.render(hu, None, SPACING, AXES, t, cam, GRAD_SETTINGS)
      )
  )(table)
  g_cached = jax.grad(
      lambda t: loss(cached_render.render_cached(cache, t, GRAD_SETTINGS))
  )(table)
  assert float(jnp.abs(g_direct).max()) > 0
  np.testing.assert_allclose(g_cached, g_direct, atol=1e-3)


def test_extreme_opacities_keep_values_and_gradients_finite():
  hu = smooth_volume()
  cam = _camera(hu.shape)
  settings = GRAD_SETTINGS
  # A sharp edge from alpha 0 to exactly 1 in the middle of the window.
  table = jnp.zeros((8, 8, 4)).at[..., :3].set(0.8).at[:, 4:, 3].set(1.0)
  loss = lambda v, t: jnp.sum(
      raymarch.render(v, None, SPACING, AXES, t, cam, settings)
  )
  img = raymarch.render(hu, None, SPACING, AXES, table, cam, settings)
  assert np.all(np.isfinite(img)) and float(img[..., 3].max()) > 0.99
  assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
  g_v, g_t = jax.grad(loss, argnums=(0, 1))(hu, table)
  assert np.all(np.isfinite(g_v)) and np.all(np.isfinite(g_t))
  assert float(jnp.abs(g_t).max()) > 0


def test_gradient_flows_to_polygon_vertices():
  tf = pytest.importorskip('rlhf_tf.render.transfer_function')
  hu = smooth_volume()
  cam = _camera(hu.shape)
  cache = ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, 16, SETTINGS)
  vertices = jnp.array([[0.3, 0.05], [0.9, 0.05], [0.9, 0.9], [0.3, 0.9]])
  loss = lambda v: jnp.mean(
      cached_render.render_cached(
          cache, tf.tf_table(v, 16, tau=0.05, alpha_max=0.5), SETTINGS
      )[..., 3]
  )
  g = jax.grad(loss)(vertices)
  assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0
