"""The pre-integrated ray cache's native build (rlhf_tf.render.
native_cache_build) against the XLA build (settings.native_march=False):
the same tiles and, for every real ray, the same fields in every row its
narrow tile stores (hypothesis: random volumes, views, shading); the same
cached images and TF gradients; no XLA sampling program, one pool shape
for every view; a view that misses the volume."""

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
    native_cache_build,
    ray_cache,
    raymarch,
)
from rlhf_tf.render import camera as camera_lib

SHAPE = (7, 9, 10)
SIZE = (10, 12)  # (H, W): padding rays in the narrow tiles.
BINS = 8
BASE = raymarch.RenderSettings(
    step_mm=1.1,
    preintegrate=True,
    tensor_normals=True,
    cache_tile_rays=24,
    termination_transmittance=0.0,
    specular=0.9,
)
MODES = {
    'tensor': BASE,
    'mean_gradient': BASE.replace(tensor_normals=False),
    'unshaded': BASE.replace(shading=False),
}
# In float64 both builds compute the same formulas: fields agree to the
# float32 rounding of the stored values, headlight terms (uint16 fixed
# point) to one step of rounding.
RTOL_64 = 1e-6
ATOL_64 = 1e-6
SHADE_LSB = 1
# In float32 the XLA build's rounding of the sample positions (~1e-6 of
# the ray parameter) and, with shading, of the gradient direction where
# |g| is near normal_eps dominate (the native build computes in float64).
ATOL_32 = 1e-4
SHADE_ATOL_32 = 2e-3


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


def _assert_same_fields(native, xla, atol, shade_atol):
  """Same tiles; same fields of real rays (atol on u, v, du; shade_atol
  on the dequantised headlight terms)."""
  a, b = native.tiles, xla.tiles
  for k in ('pixels', 'length', 'start', 'first_chunk', 'num_chunks'):
    np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
  np.testing.assert_array_equal(a.num_steps, b.num_steps)
  stored = stored_entries(a, a.u, SIZE[0] * SIZE[1])
  assert stored.sum() > 100
  shaded = BASE.replace(shading=a.diffuse is not None)
  for k, dtype in cache_sampling.field_names(shaded, False).items():
    x, y = getattr(a, k), getattr(b, k)
    assert x.dtype == y.dtype == dtype and x.shape == y.shape, k
    x = np.asarray(x, np.float64)[stored]
    y = np.asarray(y, np.float64)[stored]
    if dtype == np.uint16:
      assert np.abs(x - y).max() <= shade_atol * 65535, k
    else:
      np.testing.assert_allclose(x, y, rtol=RTOL_64, atol=atol, err_msg=k)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 5),
    azimuth=st.floats(10.0, 80.0),
    elevation=st.floats(5.0, 40.0),
    quadrant=st.integers(0, 3),
    perspective=st.booleans(),
    mode=st.sampled_from(sorted(MODES)),
)
def test_native_build_stores_the_xla_builds_fields(
    seed, azimuth, elevation, quadrant, perspective, mode
):
  """Oblique views (axis-aligned rays would put samples exactly on voxel
  planes, where the trilinear field's slope jumps and either side's is
  right)."""
  with jax.enable_x64(True):  # Rays, volume and both builds in float64.
    cam = _camera(
        azimuth + 90.0 * quadrant,
        elevation,
        'perspective' if perspective else 'orthographic',
    )
    hu = smooth_volume(SHAPE, seed=seed, dtype=np.float64)
    native, xla = native_and_xla_caches(hu, cam, BINS, MODES[mode])
  _assert_same_fields(native, xla, ATOL_64, SHADE_LSB / 65535)


def test_in_float32_the_fields_agree_to_the_xla_builds_rounding():
  hu = smooth_volume(SHAPE, seed=5)
  cam = _camera(200.0, 25.0, 'perspective')
  native, xla = native_and_xla_caches(hu, cam, BINS, MODES['mean_gradient'])
  _assert_same_fields(native, xla, ATOL_32, SHADE_ATOL_32)


def test_native_built_cache_renders_and_differentiates_as_the_xla_one():
  s = MODES['tensor']
  hu = smooth_volume(SHAPE, seed=3)
  native, xla = native_and_xla_caches(
      hu, _camera(35.0, 20.0, 'perspective'), BINS, s
  )
  table = random_table(BINS, seed=4)
  weights = jnp.array([0.3, -0.5, 0.7, 1.1])

  def loss(cache, t):
    return jnp.sum(cached_render.render_cached(cache, t, s) * weights)

  img_n = cached_render.render_cached(native, table, s)
  img_x = cached_render.render_cached(xla, table, s)
  assert float(img_n[..., 3].max()) > 0.3
  np.testing.assert_allclose(img_n, img_x, atol=1e-5)
  g_n = jax.grad(loss, argnums=1)(native, table)
  g_x = jax.grad(loss, argnums=1)(xla, table)
  np.testing.assert_allclose(g_n, g_x, rtol=1e-4, atol=1e-4)


def test_new_views_compile_nothing_and_share_the_pool_shape():
  """The native build runs no XLA sampling program (chords only, compiled
  once), and orthographic views of a scene share one pool shape."""
  hu = smooth_volume(SHAPE, seed=1)
  s = MODES['tensor']
  first = ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, _camera(20.0, 10.0, 'orthographic'), BINS, s
  )
  samplers = cache_sampling._sample_chunk._cache_size()  # pylint: disable=protected-access
  chords = cache_sampling.chords._cache_size()  # pylint: disable=protected-access
  for az in (65.0, 140.0, 250.0):
    cache = ray_cache.build_ray_cache(
        hu, None, SPACING, AXES, _camera(az, 30.0, 'orthographic'), BINS, s
    )
    assert cache.tiles.u.shape == first.tiles.u.shape
    assert cache.tiles.diffuse_mid.shape == first.tiles.u.shape
  assert cache_sampling._sample_chunk._cache_size() == samplers  # pylint: disable=protected-access
  assert cache_sampling.chords._cache_size() == chords  # pylint: disable=protected-access


def test_a_view_that_misses_the_volume_gives_an_empty_pool():
  hu = smooth_volume(SHAPE, seed=2)
  cam = _camera(30.0, 20.0, 'orthographic')
  # The whole image plane moved sideways: rays pass beside the box.
  off = 1e4 * cam.basis()[1]
  cam = cam.replace(eye=cam.eye + off, centre=cam.centre + off)
  native, xla = native_and_xla_caches(hu, cam, BINS, MODES['tensor'])
  assert int(np.asarray(native.tiles.num_chunks).sum()) == 0
  for k in cache_sampling.field_names(MODES['tensor'], False):
    x, y = getattr(native.tiles, k), getattr(xla.tiles, k)
    assert x.shape == y.shape and x.dtype == y.dtype
    assert not np.asarray(x).any()
  img = cached_render.render_cached(native, random_table(BINS), MODES['tensor'])
  np.testing.assert_array_equal(img, 0.0)


def _vm_flags(address):
  """VmFlags of the mapping holding address (/proc/self/smaps), or None."""
  try:
    with open('/proc/self/smaps') as f:
      lines = f.read().splitlines()
  except OSError:
    return None
  inside = False
  for line in lines:
    head = line.split()[0]
    if '-' in head and ':' not in head:
      lo, hi = (int(x, 16) for x in head.split('-'))
      inside = lo <= address < hi
    elif inside and head == 'VmFlags:':
      return line.split()[1:]
  return None


def test_pool_fields_are_fresh_small_pages_wrapped_without_a_copy():
  """A pool field is zeros in page-aligned memory that jax.device_put
  wraps in place, not advised for huge pages (faulting those in compacts
  memory: native_cache_build._aligned_zeros)."""
  for dtype in (np.float32, np.uint16):
    x = native_cache_build._aligned_zeros((1000, 16), dtype)  # pylint: disable=protected-access
    assert x.shape == (1000, 16) and x.dtype == dtype and x.flags.writeable
    assert x.ctypes.data % 4096 == 0 and not x.any()
    x[3, 5] = 7
    assert jax.device_put(x).unsafe_buffer_pointer() == x.ctypes.data
    big = native_cache_build._aligned_zeros((1 << 22, 16), dtype)  # pylint: disable=protected-access
    flags = _vm_flags(big.ctypes.data + big.nbytes // 2)  # Past the head.
    assert flags is None or 'hg' not in flags
  empty = native_cache_build._aligned_zeros((0, 16), np.float32)  # pylint: disable=protected-access
  assert empty.shape == (0, 16)
