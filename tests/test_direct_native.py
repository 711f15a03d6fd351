"""The native direct renderer (rlhf_tf.render.direct_native): the XLA direct
renderer's image and gradients without skipping and termination, within
their stated bounds with them, closed forms, finite differences, vmap and
threads. Tiny volumes; hypothesis draws volumes, TFs and cameras.
"""

import functools
import threading

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
from render_testing import AXES, random_table, smooth_volume, SPACING

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import direct_native, empty_space, raymarch, sampling
from rlhf_tf.render.gradient import central_gradient
from rlhf_tf.render.render_settings import RenderSettings

SHAPE = (10, 12, 9)
BASE = RenderSettings(
    step_mm=1.1,
    tile_rays=16,
    march_chunk=4,
    background=(0.1, 0.2, 0.3),
    specular=0.9,
)
EXACT = BASE.replace(skip_empty_space=False, termination_transmittance=0.0)
WEIGHTS = jnp.array([0.3, -0.5, 0.7, 1.1])


@functools.partial(jax.jit, static_argnames=('settings', 'spacing'))
def _native(hu, table, cam, settings, spacing=SPACING):
  """direct_native.render of an HU volume (d/d hu through its gradient)."""
  packed = sampling.pack_volume(hu, central_gradient(hu, spacing))
  ranges = empty_space.block_ranges(packed, spacing, settings.step_mm)
  return direct_native.render(
      packed, spacing, AXES, table, cam, settings, ranges
  )


def _xla(hu, table, cam, settings, spacing=SPACING):
  """The XLA direct renderer (raymarch._render's tiled march)."""
  return raymarch.render(
      hu, None, spacing, AXES, table, cam, settings.replace(native_march=False)
  )


def _camera(size=8, projection='perspective', azimuth=25.0, elevation=20.0):
  return camera_lib.orbit_camera(
      SHAPE,
      SPACING,
      azimuth,
      elevation,
      width=size,
      height=size,
      projection=projection,
  )


def _volume(seed, dtype=np.float32, shape=SHAPE):
  """Smooth HU with an air margin (a head in its box)."""
  hu = np.array(smooth_volume(shape, seed=seed, dtype=dtype))
  hu[:2], hu[-2:], hu[:, :3] = -1000.0, -1000.0, -1000.0
  return jnp.asarray(hu)


def _sparse_table(seed, bins=8, tiny=1e-7, strong=0.9, dtype=np.float32):
  """Alpha 0, tiny (below the skip threshold) or strong per bin: skipping,
  alpha-0 samples and termination all have work to do."""
  rng = np.random.default_rng(seed)
  t = rng.uniform(0.05, 1.0, (bins, bins, 4))
  kind = rng.integers(0, 3, (bins, bins))
  t[..., 3] = np.where(kind == 0, 0.0, np.where(kind == 1, tiny, strong))
  return jnp.asarray(t, dtype)


def _non_square_table():
  t = np.random.default_rng(3).uniform(0.05, 0.9, (5, 9, 4))
  return jnp.asarray(t, jnp.float32)


def _loss(render):
  return lambda v, t: jnp.sum(render(v, t) * WEIGHTS)


def test_without_skipping_and_termination_it_is_the_xla_renderer():
  """In float64 (no float32 rounding of sample positions, which a steep TF
  amplifies): the same image and gradients up to rounding. (Jitter's
  phases are float32, rounded differently in each XLA program: the float32
  test below covers it.)"""
  with jax.enable_x64(True):
    hu = _volume(0, np.float64)
    f64 = lambda t: jnp.asarray(t, jnp.float64)
    cases = [
        (EXACT, random_table(), _camera()),
        (
            EXACT.replace(shading=False),
            _sparse_table(1),
            _camera(projection='orthographic'),
        ),
        (EXACT.replace(shininess=2.5), _non_square_table(), _camera(7)),
    ]
    for s, table, cam in cases:
      table = f64(table)
      img = _native(hu, table, cam, s)
      img_x = _xla(hu, table, cam, s)
      assert float(img_x[..., 3].max()) > 0.5
      np.testing.assert_allclose(img, img_x, atol=1e-10)
      loss = _loss(lambda v, t, cam=cam, s=s: _native(v, t, cam, s))
      loss_x = _loss(lambda v, t, cam=cam, s=s: _xla(v, t, cam, s))
      g = jax.grad(loss, (0, 1))(hu, table)
      g_x = jax.grad(loss_x, (0, 1))(hu, table)
      for a, b in zip(g, g_x):
        scale = float(jnp.abs(b).max())
        assert scale > 0
        np.testing.assert_allclose(a, b, atol=1e-9 * scale)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    azimuth=st.floats(0.0, 360.0),
    elevation=st.floats(-80.0, 80.0),
    projection=st.sampled_from(['perspective', 'orthographic']),
    shading=st.booleans(),
)
def test_random_scenes_match_the_xla_renderer(
    seed, azimuth, elevation, projection, shading
):
  with jax.enable_x64(True):
    hu = _volume(seed % 5, np.float64)
    table = _sparse_table(seed, dtype=np.float64)
    if seed % 2:  # Columns of alpha 0 (air): the forward's HU-only test.
      table = table.at[:, : 1 + seed % 4, 3].set(0.0)
    cam = _camera(6, projection, azimuth, elevation)
    s = EXACT.replace(shading=shading)
    np.testing.assert_allclose(
        _native(hu, table, cam, s), _xla(hu, table, cam, s), atol=1e-10
    )


def test_jittered_float32_images_match_the_xla_renderer():
  """float32, jitter on: the XLA path rounds sample positions (and the
  float32 phases, differently in each program) to ~1e-6 mm, which the
  sparse TF's steep bins amplify."""
  hu = _volume(1)
  for shading in (True, False):
    for seed in range(2):
      table, cam = _sparse_table(seed), _camera(6, azimuth=40.0 * seed)
      s = EXACT.replace(shading=shading, jitter=True)
      np.testing.assert_allclose(
          _native(hu, table, cam, s), _xla(hu, table, cam, s), atol=1e-4
      )


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    tolerance=st.sampled_from([0.0, 1e-3, 3e-2]),
    termination=st.sampled_from([0.0, 1e-3, 5e-2]),
)
def test_skipping_and_termination_stay_within_their_bounds(
    seed, tolerance, termination
):
  hu = _volume(seed % 7)
  table = _sparse_table(seed)
  table = table.at[..., 3].set(
      jnp.where(table[..., 3] == 1e-7, 0.5 * tolerance / 50, table[..., 3])
  )
  cam = _camera()
  fast = BASE.replace(
      empty_space_tolerance=tolerance, termination_transmittance=termination
  )
  exact = _xla(hu, table, cam, EXACT)
  image = _native(hu, table, cam, fast)
  bound = 2.0005 * tolerance + termination + 1e-4  # + float32 rounding.
  assert float(jnp.abs(image - exact).max()) <= bound


def test_skipping_skips_and_termination_stops():
  """Some blocks are empty, and rays stop before their ends."""
  shape = (32, 32, 32)
  hu = np.full(shape, -1000.0, np.float32)  # Air, a cube of tissue.
  hu[8:24, 8:24, 8:24] = smooth_volume((16, 16, 16), seed=3)
  hu = jnp.asarray(hu)
  table = _sparse_table(4).at[:, :3, 3].set(0.0)  # Air's bins are empty.
  cam = camera_lib.head_camera(
      shape, SPACING, 12, 12, 25.0, 20.0, ortho_width_mm=30.0
  )
  packed = sampling.packed_volume(hu, SPACING)
  ranges = empty_space.block_ranges(packed, SPACING, BASE.step_mm)
  counts = {}
  stopping = EXACT.replace(termination_transmittance=1e-3)
  for name, s in (('exact', EXACT), ('stop', stopping), ('fast', BASE)):
    occ = empty_space.occupancy(
        ranges,
        AXES,
        table[..., 3],
        empty_space.skip_threshold(
            sampling.num_samples(shape, SPACING, s.step_mm),
            s.step_mm,
            s.reference_step_mm,
            s.empty_space_tolerance,
        ),
    )
    if not s.skip_empty_space:
      occ = jnp.ones((1, 1, 1), bool)
    origins, directions = camera_lib.generate_rays(cam)
    spec = direct_native.march_spec(
        shape, SPACING, AXES, (8, 8), occ.shape, 4, s, np.float32, 12, 12
    )
    _, _, steps = direct_native._forward(  # pylint: disable=protected-access
        spec,
        packed.reshape(-1, 4),
        table.reshape(-1, 4),
        origins.reshape(-1, 3),
        directions.reshape(-1, 3),
        sampling.pixel_phase(jnp.arange(144), 12, False),
        occ.reshape(-1).astype(jnp.uint8),
    )
    counts[name] = np.asarray(steps)
    if name == 'fast':
      assert not bool(occ.all()) and bool(occ.any())
  assert np.all(counts['stop'] <= counts['exact'])
  assert counts['stop'].sum() < counts['exact'].sum()  # Some rays stopped.
  exact = _native(hu, table, cam, EXACT)
  assert float(exact[..., 3].max()) > 0.999
  np.testing.assert_allclose(
      _native(hu, table, cam, BASE), exact, atol=2.0005 * 5e-4 + 1e-3
  )


def test_constant_slab_transmittance_is_exact_in_float64():
  shape, a, ref, step = (6, 8, 6), 0.3, 1.0, 0.7  # step does not divide L.
  with jax.enable_x64(True):
    hu = jnp.full(shape, 100.0, jnp.float64)
    table = jnp.ones((4, 4, 4), jnp.float64) * jnp.array([0.2, 0.5, 0.9, a])
    cam = camera_lib.head_camera(
        shape, SPACING, width=4, height=4, ortho_width_mm=4.0
    )  # Rays along +y.
    for jitter in (False, True):
      s = EXACT.replace(
          step_mm=step,
          reference_step_mm=ref,
          shading=False,
          jitter=jitter,
          background=(0.0, 0.0, 0.0),
      )
      img = _native(hu, table, cam, s)
      expected = -np.expm1(np.log1p(-a) / ref * shape[1] * SPACING[1])
      np.testing.assert_allclose(img[..., 3], expected, rtol=1e-12)
      np.testing.assert_allclose(img[..., 2], 0.9 * expected, rtol=1e-12)


def test_empty_tf_gives_exactly_the_background():
  hu, cam = _volume(1), _camera()
  table = random_table().at[..., 3].set(0.0)
  img = _native(hu, table, cam, BASE)
  np.testing.assert_array_equal(
      img[..., :3], jnp.broadcast_to(jnp.array(BASE.background), (8, 8, 3))
  )
  np.testing.assert_array_equal(img[..., 3], 0.0)


def test_gradients_of_the_skipped_terminated_image_match_finite_differences():
  with jax.enable_x64(True):
    hu = _volume(2, np.float64, (6, 7, 6))
    table = _sparse_table(5, bins=6, tiny=1e-9, strong=0.7, dtype=np.float64)
    cam = camera_lib.orbit_camera(
        (6, 7, 6), SPACING, 25.0, 20.0, width=5, height=5
    )
    for shading in (True, False):
      s = BASE.replace(
          step_mm=1.5, termination_transmittance=0.05, shading=shading
      )
      check_grads(
          lambda v, t, s=s: _native(v, t, cam, s),
          (hu, table),
          order=1,
          modes=('rev',),
          eps=1e-6,
      )


def test_vmap_over_tf_tables_equals_a_loop():
  hu, cam = _volume(4), _camera()
  tables = jnp.stack([_sparse_table(s) for s in range(3)])
  batched = jax.vmap(lambda t: _native(hu, t, cam, BASE))(tables)
  grads = jax.vmap(
      jax.grad(lambda t: jnp.sum(_native(hu, t, cam, BASE) * WEIGHTS))
  )(tables)
  for i in range(3):
    np.testing.assert_array_equal(batched[i], _native(hu, tables[i], cam, BASE))
    np.testing.assert_allclose(
        grads[i],
        jax.grad(lambda t: jnp.sum(_native(hu, t, cam, BASE) * WEIGHTS))(
            tables[i]
        ),
        atol=1e-6,
    )


def test_raymarch_render_on_cpu_is_the_native_march():
  hu, cam, table = _volume(6), _camera(), _sparse_table(6)
  assert raymarch.native_march(BASE)
  # Point sampling shaded from the structure tensor stays on XLA.
  assert not raymarch.native_march(BASE.replace(tensor_normals=True))
  np.testing.assert_array_equal(
      raymarch.render(hu, None, SPACING, AXES, table, cam, BASE),
      _native(hu, table, cam, BASE),
  )


def test_calls_from_two_threads_give_the_same_images():
  hu, cam = _volume(5), _camera()
  tables = [_sparse_table(s) for s in range(3)]
  expected = [np.asarray(_native(hu, t, cam, BASE)) for t in tables]
  got = {}

  def work(k):
    for _ in range(3):
      for i, t in enumerate(tables):
        got[(k, i)] = np.asarray(_native(hu, t, cam, BASE))

  threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
  for th in threads:
    th.start()
  for th in threads:
    th.join()
  for (_, i), img in got.items():
    np.testing.assert_array_equal(img, expected[i])
