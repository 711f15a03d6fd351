"""The point-sampled ray cache's native build (rlhf_tf.render.
native_point_build) against the XLA build (settings.native_march=False):
the same tiles and, for every real ray, the same TF lookups in every row
its narrow tile stores (hypothesis: random volumes, views, shading); the
same cached images and TF gradients; no XLA sampling program per view."""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from render_testing import (
    AXES,
    native_and_xla_caches,
    random_table,
    smooth_volume,
    SPACING,
    stored_entries,
)

from rlhf_tf.render import (
    cache_sampling,
    cached_render,
    ray_cache,
    raymarch,
)
from rlhf_tf.render import camera as camera_lib

SHAPE = (7, 9, 10)
SIZE = (10, 12)  # (H, W): padding rays in the narrow tiles.
BINS = (6, 8)  # (bins_y, bins_x): a non-square table.
BASE = raymarch.RenderSettings(
    step_mm=1.1,
    cache_tile_rays=24,
    termination_transmittance=0.0,
    specular=0.9,
)
MODES = {
    'shaded': BASE,
    'tensor': BASE.replace(tensor_normals=True),
    'unshaded': BASE.replace(shading=False),
}
_LSB = 1.0 / 65535


def _camera(azimuth, elevation, projection):
  return camera_lib.orbit_camera(
      SHAPE,
      SPACING,
      azimuth,
      elevation,
      width=SIZE[1],
      height=SIZE[0],
      projection=projection,
  )


def _coords(tiles, stored):
  """(x, y) in bins of every stored sample: the lower-left bin plus its
  dequantised fraction (a sample on a bin edge has the same coordinate
  from either bin)."""
  idx = np.asarray(tiles.idx)[stored]
  fx = np.asarray(tiles.fx, np.float64)[stored] * _LSB
  fy = np.asarray(tiles.fy, np.float64)[stored] * _LSB
  return idx % BINS[1] + fx, idx // BINS[1] + fy


def _assert_same_fields(native, xla, coord_atol, shade_atol):
  a, b = native.tiles, xla.tiles
  for k in ('pixels', 'length', 'start', 'first_chunk', 'num_chunks'):
    np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
  stored = stored_entries(a, a.idx, SIZE[0] * SIZE[1])
  assert stored.sum() > 100
  shaded = BASE.replace(shading=a.diffuse is not None)
  for k, dtype in cache_sampling.field_names(shaded, False).items():
    x, y = getattr(a, k), getattr(b, k)
    assert x.dtype == y.dtype == dtype and x.shape == y.shape, k
    assert not np.asarray(x)[~stored].any(), k  # Untouched: zeros.
  for x, y in zip(_coords(a, stored), _coords(b, stored)):
    np.testing.assert_allclose(x, y, rtol=0, atol=coord_atol)
  # Most samples take the very same bin.
  same = np.asarray(a.idx)[stored] == np.asarray(b.idx)[stored]
  assert same.mean() > 0.99
  if a.diffuse is not None:
    for k in ('diffuse', 'specular'):
      x = np.asarray(getattr(a, k), np.float64)[stored]
      y = np.asarray(getattr(b, k), np.float64)[stored]
      assert np.abs(x - y).max() <= shade_atol * 65535, k


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 5),
    azimuth=st.floats(10.0, 80.0),
    elevation=st.floats(5.0, 40.0),
    quadrant=st.integers(0, 3),
    perspective=st.booleans(),
    mode=st.sampled_from(sorted(MODES)),
)
def test_native_build_stores_the_xla_builds_lookups(
    seed, azimuth, elevation, quadrant, perspective, mode
):
  """In float64: coordinates to a step of their uint16 rounding, headlight
  terms to one step."""
  with jax.enable_x64(True):
    cam = _camera(
        azimuth + 90.0 * quadrant,
        elevation,
        'perspective' if perspective else 'orthographic',
    )
    hu = smooth_volume(SHAPE, seed=seed, dtype=np.float64)
    native, xla = native_and_xla_caches(hu, cam, BINS, MODES[mode])
  _assert_same_fields(native, xla, 1.01 * _LSB, _LSB)


def test_in_float32_the_lookups_agree_to_the_xla_builds_rounding():
  hu = smooth_volume(SHAPE, seed=5)
  native, xla = native_and_xla_caches(
      hu, _camera(200.0, 25.0, 'perspective'), BINS, BASE
  )
  _assert_same_fields(native, xla, 1e-4, 2e-3)


def test_native_built_cache_renders_and_differentiates_as_the_xla_one():
  s = MODES['shaded']
  hu = smooth_volume(SHAPE, seed=3)
  native, xla = native_and_xla_caches(
      hu, _camera(35.0, 20.0, 'perspective'), BINS, s
  )
  table = random_table(8, seed=4)[: BINS[0]]  # [bins_y, bins_x, 4].
  weights = jnp.array([0.3, -0.5, 0.7, 1.1])

  def loss(cache, t):
    return jnp.sum(cached_render.render_cached(cache, t, s) * weights)

  img_n = cached_render.render_cached(native, table, s)
  img_x = cached_render.render_cached(xla, table, s)
  assert float(img_n[..., 3].max()) > 0.3
  np.testing.assert_allclose(img_n, img_x, atol=1e-4)
  g_n = jax.grad(loss, argnums=1)(native, table)
  g_x = jax.grad(loss, argnums=1)(xla, table)
  np.testing.assert_allclose(g_n, g_x, rtol=1e-3, atol=1e-4)


def test_new_views_run_no_xla_sampling_program():
  hu = smooth_volume(SHAPE, seed=1)
  s = MODES['shaded']
  first = ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, _camera(20.0, 10.0, 'orthographic'), BINS, s
  )
  samplers = cache_sampling._sample_chunk._cache_size()  # pylint: disable=protected-access
  for az in (65.0, 140.0, 250.0):
    cache = ray_cache.build_ray_cache(
        hu, None, SPACING, AXES, _camera(az, 30.0, 'orthographic'), BINS, s
    )
    assert cache.tiles.idx.shape == first.tiles.idx.shape
    assert cache.tiles.diffuse.shape == first.tiles.idx.shape
  assert cache_sampling._sample_chunk._cache_size() == samplers  # pylint: disable=protected-access
