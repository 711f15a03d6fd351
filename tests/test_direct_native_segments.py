"""The native pre-integrated direct renderer (rlhf_tf.render.
direct_native_segments): the XLA pre-integrated march's image without
skipping and termination (float64 rounding), within their stated bounds
with them, skipping and termination at work. (Its closed form, a constant
slab's exp(-sigma L), and its gradient, the XLA march's VJP, against the
cached adjoint: tests/test_preintegration.py, whose raymarch.render runs
it on CPU.) Tiny volumes; hypothesis draws scenes."""

import functools

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from render_testing import AXES, random_table, smooth_volume, SPACING

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import (
    direct_native,
    direct_native_segments,
    direct_skip_tables,
    empty_space,
    native_segment_plan,
    preintegration,
    raymarch,
    sampling,
)
from rlhf_tf.render.render_settings import RenderSettings

SHAPE = (10, 12, 9)
BASE = RenderSettings(
    step_mm=1.1,
    tile_rays=16,
    march_chunk=4,
    background=(0.1, 0.2, 0.3),
    specular=0.9,
    preintegrate=True,
    tensor_normals=True,
)
EXACT = BASE.replace(skip_empty_space=False, termination_transmittance=0.0)
# Shading from the structure tensor, from the mean gradient, none.
OPTICS = (
    {},
    {'tensor_normals': False},
    {'shading': False},
)


def _render(hu, table, cam, s):
  return raymarch.render(hu, None, SPACING, AXES, table, cam, s)


def _xla(hu, table, cam, s):
  return _render(hu, table, cam, s.replace(native_march=False))


def _camera(size=6, projection='perspective', azimuth=25.0, elevation=20.0):
  return camera_lib.orbit_camera(
      SHAPE,
      SPACING,
      azimuth,
      elevation,
      width=size,
      height=size,
      projection=projection,
  )


def _volume(seed, dtype=np.float32):
  """Smooth HU with an air margin (a head in its box) below the JH axis
  (clipped, slope 0 in both marches). Not at hu_min: there the XLA march's
  rounding of a constant field gives x = +-1e-16 and slopes +-1e-13 whose
  signs decide preintegration.extremum's bracket (a crest split or none),
  where the native lerps give x = 0 and slope 0 exactly."""
  hu = np.array(smooth_volume(SHAPE, seed=seed, dtype=dtype))
  hu[:2], hu[-2:], hu[:, :3] = -1100.0, -1100.0, -1100.0
  return jnp.asarray(hu)


def _sparse_table(seed, bins=8, tiny=1e-7, dtype=np.float32):
  """Alpha 0, tiny (below the skip threshold) or strong per bin, and the
  air's columns clear: every skip has work to do."""
  rng = np.random.default_rng(seed)
  t = rng.uniform(0.05, 1.0, (bins, bins, 4))
  kind = rng.integers(0, 3, (bins, bins))
  t[..., 3] = np.where(kind == 0, 0.0, np.where(kind == 1, tiny, 0.9))
  t[:, : 1 + seed % 3, 3] = 0.0
  return jnp.asarray(t, dtype)


def _non_square_table(seed, dtype=np.float32):
  t = np.random.default_rng(seed).uniform(0.05, 0.9, (5, 9, 4))
  return jnp.asarray(t, dtype)


def test_raymarch_render_on_cpu_marches_pre_integration_natively():
  assert raymarch.native_march(BASE)
  assert raymarch.native_march(BASE.replace(tensor_normals=False))
  # Point sampling with tensor shading stays on the XLA march.
  assert not raymarch.native_march(BASE.replace(preintegrate=False))


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    azimuth=st.floats(0.0, 360.0),
    elevation=st.floats(-80.0, 80.0),
    projection=st.sampled_from(['perspective', 'orthographic']),
)
def test_without_skipping_and_termination_it_is_the_xla_march(
    seed, azimuth, elevation, projection
):
  """float64: the same image up to rounding, shaded from the structure
  tensor or the mean gradient, with a sparse (clear columns, alpha-0 bins)
  or dense TF."""
  with jax.enable_x64(True):
    hu = _volume(seed % 5, np.float64)
    table = _non_square_table(seed, np.float64)
    if seed % 2:  # Clear columns and alpha-0 bins: the skips' work.
      table = table.at[..., : 1 + seed % 3, 3].set(0.0)
      table = table.at[..., 3].multiply(table[..., 0] > 0.3)
    cam = _camera(6, projection, azimuth, elevation)
    for optics in OPTICS[:2]:  # Unshaded: the float32 test.
      s = EXACT.replace(**optics)
      img, img_x = _render(hu, table, cam, s), _xla(hu, table, cam, s)
      np.testing.assert_allclose(img, img_x, rtol=0, atol=1e-12)


def test_float32_images_match_the_xla_march():
  """float32 (the XLA march rounds in float32, the native one in float64),
  jitter on, unshaded: within float32 rounding amplified by steep bins."""
  hu, table = _volume(1), random_table()
  cam = _camera(8)
  s = EXACT.replace(jitter=True, **OPTICS[2])
  img_x = _xla(hu, table, cam, s)
  assert float(img_x[..., 3].max()) > 0.5
  np.testing.assert_allclose(_render(hu, table, cam, s), img_x, atol=1e-4)


def test_unshaded_march_without_shading_code_is_bit_identical(monkeypatch):
  """float32 unshaded: the march compiled without the shading code (lit
  None, native_segment_forward.lit_flag) gives the runtime flag's (lit
  True) colour and log T bit for bit, with skipping and termination."""
  from rlhf_tf.render import direct_segment_kernels

  kernel = direct_segment_kernels.forward_kernel
  outputs = {}

  def both(*args):
    *inputs, rgb, log_t, lit = args
    assert lit is None  # Unshaded float32.
    for flag in (True, None):
      kernel(*inputs, rgb, log_t, flag)
      outputs[flag] = (rgb.copy(), log_t.copy())

  monkeypatch.setattr(direct_segment_kernels, 'forward_kernel', both)
  hu, table = _volume(2), random_table()
  img = _render(hu, table, _camera(8), BASE.replace(**OPTICS[2]))
  assert float(img[..., 3].max()) > 0.5
  for a, b in zip(outputs[True], outputs[None]):
    np.testing.assert_array_equal(a, b)


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    tolerance=st.sampled_from([0.0, 1e-3, 3e-2]),
    termination=st.sampled_from([0.0, 1e-3, 5e-2]),
)
def test_skipping_and_termination_stay_within_their_bounds(
    seed, tolerance, termination
):
  """Pixels within 2.0005 x the skip tolerance + the termination threshold
  of the march without either (empty_space's bound; that march is the XLA
  one: test_without_skipping_and_termination_it_is_the_xla_march)."""
  hu = _volume(seed % 7)
  table = _sparse_table(seed)
  table = table.at[..., 3].set(
      jnp.where(table[..., 3] == 1e-7, 0.5 * tolerance / 50, table[..., 3])
  )
  cam = _camera(8)
  fast = BASE.replace(
      empty_space_tolerance=tolerance,
      termination_transmittance=termination,
      **OPTICS[seed % 3],
  )
  exact = _render(hu, table, cam, EXACT.replace(**OPTICS[seed % 3]))
  image = _render(hu, table, cam, fast)
  bound = 2.0005 * tolerance + termination + 1e-4  # + float32 rounding.
  assert float(jnp.abs(image - exact).max()) <= bound


@functools.partial(jax.jit, static_argnames=('s', 'coarse'))
def _march(hu, table, cam, s, occ_value, coarse=1):
  """direct_native_segments.march with the blocks' occupancy set to
  occ_value (a value or one per block), coarse blocks of coarse^3 blocks:
  (rgb [N, 3], log T [N])."""
  packed = sampling.packed_volume(hu, SPACING)
  ranges = empty_space.block_ranges(packed, SPACING, s.step_mm)
  spec, o, d, phase, occ = direct_native.march_inputs(
      packed, SPACING, AXES, table, cam, s, ranges
  )
  pv = preintegration.segment_table(table, s.reference_step_mm)
  return direct_native_segments.march(
      spec,
      packed.reshape(-1, 4),
      pv.reshape(-1, 8),
      o,
      d,
      phase,
      jnp.broadcast_to(jnp.asarray(occ_value, occ.dtype), occ.shape),
      coarse,
  )


def test_coarse_blocks_skip_only_what_the_blocks_skip():
  """Coarse blocks of 2^3 / 3^3 blocks: the same image as blocks alone,
  with an occupancy drawn per coarse block of 2^3 (then per block inside
  the occupied ones) over a volume visible everywhere, so that any segment
  skipped or marched in excess shows."""
  shape = (26, 24, 22)
  hu = smooth_volume(shape, seed=2)
  cam = camera_lib.orbit_camera(shape, SPACING, 35.0, 25.0, width=9, height=9)
  table = random_table()
  s = EXACT.replace(skip_empty_space=True)
  nb = np.array([-(-n // empty_space.BLOCK) for n in shape])
  rng = np.random.default_rng(0)
  coarse = rng.random(-(-nb // 2)) < 0.4
  occ = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)[: nb[0], : nb[1], : nb[2]]
  occ = (occ & (rng.random(nb) < 0.8)).reshape(-1).astype(np.uint8)
  coarse_occ, _ = direct_skip_tables.coarse_occupancy(occ, nb, 2)
  assert 0 < coarse_occ.sum() < coarse_occ.size  # Work for both levels.
  rgb, log_t = _march(hu, table, cam, s, occ)
  assert float(jnp.abs(rgb).max()) > 0.1 and float(log_t.min()) < -0.1
  assert (
      float(jnp.abs(rgb - _march(hu, table, cam, s, 1)[0]).max()) > 0.01
  )  # The skipped blocks' matter shows.
  for c in (2, 3):
    rgb_c, log_t_c = _march(hu, table, cam, s, occ, c)
    np.testing.assert_array_equal(rgb_c, rgb)
    np.testing.assert_array_equal(log_t_c, log_t)


@settings(max_examples=30, deadline=None)
@given(
    nb=st.tuples(*[st.integers(1, 9)] * 3),
    coarse=st.integers(1, 5),
    density=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_coarse_occupancy_is_any_block_occupied(nb, coarse, density, seed):
  """A coarse block (coarse^3 blocks, cut at the volume's far faces) is
  occupied iff one of its blocks is, against a plain loop."""
  nb = np.asarray(nb, np.int64)
  occ = np.random.default_rng(seed).random(nb) < density
  out, cb = direct_skip_tables.coarse_occupancy(
      occ.reshape(-1).astype(np.uint8), nb, coarse
  )
  np.testing.assert_array_equal(cb, -(-nb // coarse))
  for c in np.ndindex(tuple(cb)):
    block = tuple(slice(i * coarse, (i + 1) * coarse) for i in c)
    flat = (c[0] * cb[1] + c[1]) * cb[2] + c[2]
    assert out[flat] == occ[block].any(), c


def test_empty_blocks_are_skipped_and_rays_stop():
  """Every block marked empty: nothing is marched; rays stop at the first
  segment that takes their transmittance below the threshold."""
  hu, table, cam = _volume(3), random_table(), _camera(8)
  rgb, log_t = _march(hu, table, cam, EXACT.replace(skip_empty_space=True), 0)
  np.testing.assert_array_equal(rgb, 0.0)
  np.testing.assert_array_equal(log_t, 0.0)
  _, log_t = _march(hu, table, cam, EXACT, 1)
  threshold = 0.5
  _, log_t_stop = _march(
      hu, table, cam, EXACT.replace(termination_transmittance=threshold), 1
  )
  t, t_stop = np.exp(log_t), np.exp(log_t_stop)
  stopped = t < threshold
  assert stopped.any() and (~stopped).any()
  np.testing.assert_allclose(t_stop[~stopped], t[~stopped], rtol=1e-6)
  # A stopped ray ends below the threshold, with at least the light the
  # full march lets through (more where it stopped before opaque matter).
  assert np.all(t_stop[stopped] < threshold)
  assert np.all(t_stop[stopped] >= t[stopped] * (1 - 1e-9))
  assert np.any(t_stop[stopped] > 2 * t[stopped])


def test_empty_tf_gives_exactly_the_background():
  hu, cam = _volume(1), _camera()
  img = _render(hu, random_table().at[..., 3].set(0.0), cam, BASE)
  np.testing.assert_array_equal(
      img[..., :3], jnp.broadcast_to(jnp.array(BASE.background), (6, 6, 3))
  )
  np.testing.assert_array_equal(img[..., 3], 0.0)


@settings(max_examples=30, deadline=None)
@given(
    bins=st.tuples(st.integers(2, 7), st.integers(1, 9)),
    seed=st.integers(0, 2**31 - 1),
)
def test_next_occupied_is_the_summed_area_test_over_every_row(bins, seed):
  """The march's column test (direct_skip_tables.next_occupied) says
  what native_segment_plan.surely_transparent's summed-area table says for
  a v range of [0, bins_y - 1] (every gradient row), for every column range
  c0 .. c1 - 1."""
  by, bx = bins
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(by * bx, 8))
  table[rng.random(by * bx) < 0.7, 4] = 0.0  # Mostly zero extinction.
  nxt = direct_skip_tables.next_occupied(table, bx)
  sat = native_segment_plan.occupancy(table, bx)
  r0, r1 = 0, by  # surely_transparent's rows for v in [0, bins_y - 1].
  for c0 in range(bx):
    for c1 in range(c0 + 1, bx + 1):
      count = sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]
      assert (nxt[c0] >= c1) == (count == 0), (c0, c1)
