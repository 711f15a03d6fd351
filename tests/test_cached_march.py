"""The cached forward march and its hand-written adjoint (custom VJP).

The adjoint is checked against finite differences (float64), against
autodiff of the direct renderer (which differentiates compositing.composite_log
by JAX), at clipped colours and opaque bins, and under vmap.
"""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
from render_testing import AXES, random_table, smooth_volume, SPACING

from rlhf_tf.render import (
    cached_render,
    compositing,
    ray_cache,
    raymarch,
    render_settings,
    sampling,
)
from rlhf_tf.render import camera as camera_lib

# Strong specular: some shaded colours clip at 1 (their colour gradient is 0).
# No early ray termination (the cached march on CPU and the direct renderer
# stop rays differently): the renderers compared here compute the same
# function. Termination: tests/test_cached_native.py.
SETTINGS = render_settings.RenderSettings(
    step_mm=1.1,
    tile_rays=16,
    sample_levels=1,
    background=(0.1, 0.2, 0.3),
    specular=0.9,
    diffuse=0.8,
    termination_transmittance=0.0,
)


def _camera(shape, size=6):
  return camera_lib.orbit_camera(
      shape,
      SPACING,
      25.0,
      20.0,
      width=size,
      height=size,
      projection='perspective',
  )


def _cache(hu, cam, settings, bins=8, num_buckets=3):
  return ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, cam, bins, settings, num_buckets=num_buckets
  )


def test_some_colours_clip_so_the_clip_branch_is_exercised():
  hu = smooth_volume()
  cache = _cache(hu, _camera(hu.shape), SETTINGS)
  b = cache.tiles
  rgb = sampling.bilinear_lookup(
      sampling.corner_table(random_table()),
      b.idx,
      np.asarray(b.fx) / 65535.0,
      np.asarray(b.fy) / 65535.0,
  )[..., :3]
  lit = (
      rgb
      * (
          SETTINGS.ambient
          + SETTINGS.diffuse * np.asarray(b.diffuse)[..., None] / 65535.0
      )
      + SETTINGS.specular * np.asarray(b.specular)[..., None] / 65535.0
  )
  clipped = np.mean(np.asarray(lit) >= 1.0)
  assert 0.01 < clipped < 0.9, clipped


def test_adjoint_matches_finite_differences_float64():
  with jax.enable_x64(True):
    hu = smooth_volume((6, 6, 6), dtype=np.float64)
    table = random_table(bins=6, dtype=np.float64)
    for shading in (True, False):
      settings = SETTINGS.replace(shading=shading)
      cache = _cache(hu, _camera(hu.shape, size=5), settings, bins=6)
      check_grads(
          lambda t, c=cache, s=settings: cached_render.render_cached(c, t, s),
          (table,),
          order=1,
          modes=('rev',),
          eps=1e-6,
      )


def test_adjoint_equals_autodiff_of_the_direct_renderer():
  hu = smooth_volume()
  cam = _camera(hu.shape, size=8)
  cache = _cache(hu, cam, SETTINGS)
  # Opaque bins (alpha = 1: zero alpha gradient there, like safe_log1m) and
  # a cotangent on every channel, alpha included.
  table = random_table().at[:, 3:, 3].set(1.0)
  weights = jnp.array([0.3, -0.5, 0.7, 1.1])
  loss = lambda img: jnp.sum(img * weights)
  g_direct = jax.grad(
      lambda t: loss(raymarch.render(hu, None, SPACING, AXES, t, cam, SETTINGS))
  )(table)
  g_cached = jax.grad(
      lambda t: loss(cached_render.render_cached(cache, t, SETTINGS))
  )(table)
  assert np.all(np.isfinite(g_cached))
  assert float(jnp.abs(g_direct).max()) > 0.1
  np.testing.assert_allclose(g_cached, g_direct, atol=2e-3)


def test_gradient_under_vmap_equals_a_loop():
  hu = smooth_volume()
  cache = _cache(hu, _camera(hu.shape), SETTINGS)
  tables = jnp.stack([random_table(seed=s) for s in range(3)])
  loss = lambda t: jnp.mean(cached_render.render_cached(cache, t, SETTINGS))
  batched = jax.vmap(jax.grad(loss))(tables)
  for i in range(3):
    np.testing.assert_allclose(
        batched[i], jax.grad(loss)(tables[i]), rtol=1e-5, atol=1e-7
    )


def test_march_equals_composite_log_on_the_cached_samples():
  """The step-by-step accumulation is composite_log in another order of
  operations: rebuild [rays, S] arrays from the cache and composite them."""
  hu = smooth_volume()
  cache = _cache(hu, _camera(hu.shape), SETTINGS)
  table = random_table()
  image = cached_render.render_cached(cache, table, SETTINGS).reshape(-1, 4)
  b = cache.tiles
  checked = 0
  for t in range(b.pixels.shape[0]):
    n = int(b.num_chunks[t]) * ray_cache.CHUNK
    if not n:
      continue
    rows = slice(int(b.first_chunk[t]) * ray_cache.CHUNK, None)
    field = lambda name: np.asarray(getattr(b, name))[rows][:n].T
    rgba = sampling.bilinear_lookup(
        sampling.corner_table(table),
        field('idx'),
        field('fx').astype(np.float32) / 65535.0,
        field('fy').astype(np.float32) / 65535.0,
    )
    col = compositing.shade(
        rgba[..., :3],
        field('diffuse') / 65535.0,
        field('specular') / 65535.0,
        SETTINGS.ambient,
        SETTINGS.diffuse,
        SETTINGS.specular,
    )
    seg = sampling.segment_span(b.start[t], b.length[t], n, SETTINGS.step_mm)[0]
    log_trans = compositing.opacity_log_transmittance(
        rgba[..., 3], seg, SETTINGS.reference_step_mm
    )
    rgb, acc = compositing.composite_log(col, log_trans)
    expected = compositing.over_background(rgb, acc, SETTINGS.background)
    pixels = np.asarray(b.pixels[t])
    real = pixels < image.shape[0]
    np.testing.assert_allclose(image[pixels[real]], expected[real], atol=2e-6)
    checked += int(real.sum())
  assert checked > 0


def test_adjoint_with_a_non_square_table():
  """The adjoint's flat 2x2 offsets (idx + 1, idx + bins_x) on a table with
  bins_y != bins_x."""
  hu = smooth_volume()
  cam = _camera(hu.shape, size=8)
  cache = _cache(hu, cam, SETTINGS, bins=(5, 9))
  table = jnp.asarray(
      np.random.default_rng(3).uniform(0.05, 0.6, (5, 9, 4)), jnp.float32
  )
  loss = lambda img: jnp.sum(img * jnp.array([0.3, -0.5, 0.7, 1.1]))
  g_direct = jax.grad(
      lambda t: loss(raymarch.render(hu, None, SPACING, AXES, t, cam, SETTINGS))
  )(table)
  g_cached = jax.grad(
      lambda t: loss(cached_render.render_cached(cache, t, SETTINGS))
  )(table)
  assert float(jnp.abs(g_direct).max()) > 0.1
  np.testing.assert_allclose(g_cached, g_direct, atol=2e-3)


def test_a_new_view_compiles_nothing():
  """Caches of two orthographic views share their shapes (the pool is
  sized for any view), so render_cached, its gradient and the direct
  renderer run the programs compiled for the first view."""
  hu = smooth_volume((8, 10, 9))
  settings = SETTINGS.replace(cache_tile_rays=32)
  table = random_table()
  cams = [
      camera_lib.orbit_camera(
          hu.shape,
          SPACING,
          az,
          15.0,
          width=12,
          height=12,
          projection='orthographic',
      )
      for az in (10.0, 75.0, 200.0)
  ]
  loss = jax.jit(
      jax.grad(
          lambda t, c: jnp.sum(
              cached_render.render_cached(c, t, settings)[..., :3]
          )
      )
  )
  sizes = []
  for cam in cams:
    cache = _cache(hu, cam, settings)
    cached_render.render_cached(cache, table, settings)
    loss(table, cache)
    raymarch.render(hu, None, SPACING, AXES, table, cam, settings)
    sizes.append(
        (
            cached_render._render_cached._cache_size(),
            loss._cache_size(),
            raymarch._render._cache_size(),
        )
    )
  assert sizes[1] == sizes[0] and sizes[2] == sizes[0]
