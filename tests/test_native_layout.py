"""The ray cache's pool in narrow tiles (rlhf_tf.render.native_layout):
the same image and gradient as the wide tiles it came from, fewer or as many
rows, shapes that depend only on the wide tiles' shapes."""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from render_testing import AXES, random_table, smooth_volume, SPACING

from rlhf_tf.render import (
    cached_march,
    cached_native,
    native_layout,
    ray_cache,
    raymarch,
)
from rlhf_tf.render import camera as camera_lib

SETTINGS = raymarch.RenderSettings(
    step_mm=1.1,
    background=(0.1, 0.2, 0.3),
    termination_transmittance=0.0,
)
WEIGHTS = jnp.array([0.3, -0.5, 0.7, 1.1])


def _wide_cache(tile, size=8, azimuth=25.0):
  hu = smooth_volume((8, 8, 8))
  cam = camera_lib.orbit_camera(
      (8, 8, 8),
      SPACING,
      azimuth,
      20.0,
      width=size,
      height=size,
      projection='perspective',
  )
  return ray_cache.build_ray_cache(
      hu,
      None,
      SPACING,
      AXES,
      cam,
      8,
      SETTINGS.replace(cache_tile_rays=tile),
      narrow=False,
  )


def _narrow(cache, samples=None):
  fields = {
      k: None if v is None else np.asarray(v)
      for k, v in vars(cache.tiles).items()
  }
  out = native_layout.regroup(fields, samples, 0, cache.height * cache.width)
  tiles = cache.tiles.replace(**{k: jnp.asarray(v) for k, v in out.items()})
  return cache.replace(tiles=tiles)


def _image_and_grad(march, cache, table):
  fn = lambda t: march.cached_image(cache, t, SETTINGS)
  return fn(table), jax.grad(lambda t: jnp.sum(fn(t) * WEIGHTS))(table)


@settings(max_examples=3, deadline=None)
@given(
    tile=st.sampled_from([5, 16, 24, 40]),
    azimuth=st.floats(0.0, 360.0),
    seed=st.integers(0, 2**16),
)
def test_narrow_tiles_render_what_the_wide_ones_do(tile, azimuth, seed):
  wide = _wide_cache(tile, azimuth=azimuth)
  narrow = _narrow(wide)
  table = random_table(seed=seed)
  img, grad = _image_and_grad(cached_march, wide, table)
  for march in (cached_march, cached_native):
    img_n, grad_n = _image_and_grad(march, narrow, table)
    np.testing.assert_allclose(img_n, img, atol=1e-6)
    np.testing.assert_allclose(grad_n, grad, atol=2e-5)
  tiles = narrow.tiles
  assert tiles.pixels.shape[1] == native_layout.GROUP
  assert tiles.idx.size >= wide.tiles.idx.size
  # Each narrow tile walks at most its wide tile's rows.
  per = -(-wide.tiles.pixels.shape[1] // native_layout.GROUP)
  assert np.all(
      np.asarray(tiles.num_steps)
      <= np.repeat(np.asarray(wide.tiles.num_steps), per)
  )


def test_a_build_in_narrow_tiles_equals_the_regrouped_wide_one():
  """build_ray_cache(narrow=True) (the default for the native march)
  writes each wide tile's rows straight into narrow tiles (the XLA build:
  native_march=False; on CPU the native one samples them itself,
  tests/test_native_point_build.py)."""
  wide = _wide_cache(24)
  built = ray_cache.build_ray_cache(
      smooth_volume((8, 8, 8)),
      None,
      SPACING,
      AXES,
      camera_lib.orbit_camera(
          (8, 8, 8),
          SPACING,
          25.0,
          20.0,
          width=8,
          height=8,
          projection='perspective',
      ),
      8,
      SETTINGS.replace(cache_tile_rays=24, native_march=False),
      narrow=True,
  )
  table = random_table(seed=3)
  img, grad = _image_and_grad(cached_native, built, table)
  img_w, grad_w = _image_and_grad(cached_march, wide, table)
  np.testing.assert_allclose(img, img_w, atol=1e-6)
  np.testing.assert_allclose(grad, grad_w, atol=2e-5)
  # Narrow tiles stop at their own longest ray: no more rows than wide.
  assert (
      int(np.sum(np.asarray(built.tiles.num_steps))) * 16
      <= int(np.sum(np.asarray(wide.tiles.num_steps))) * 24
  )


def test_shapes_depend_only_on_the_wide_shapes():
  """Views whose wide caches have the same shapes share compiled programs;
  their narrow ones too."""
  for tile in (5, 24):
    wide = _wide_cache(tile, azimuth=200.0)
    n_tiles, width = wide.tiles.pixels.shape
    per = -(-width // native_layout.GROUP)
    narrow = _narrow(wide).tiles
    assert narrow.pixels.shape == (n_tiles * per, native_layout.GROUP)
    assert narrow.start.shape == narrow.pixels.shape
    assert narrow.num_steps.shape == (n_tiles * per,)
    rows = wide.tiles.idx.shape[0] * per
    assert narrow.idx.shape == (rows, native_layout.GROUP)
    assert narrow.diffuse.shape == (rows, native_layout.GROUP)
