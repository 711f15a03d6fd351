"""The forward's records of its classified segments' table reads
(rlhf_tf.render.native_segment_kept): the adjoint that reads them gives
the cotangent of the one that reads the table again (float64: to
~1e-15), with early ray termination, shaded or not, with an arena too
small for every segment (the rest read from the table); the records are
read (changed records change the cotangent), a record whose key is not
the segment's is not (the table is read instead), and the gradient of the
cached image, which keeps them, is the table-reading adjoint's. The arena
is reused from call to call: a ticket another forward has overwritten
reads the table, and gradients of several renders in one program, or
one forward's cotangents taken twice, are those of each alone."""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from render_testing import random_table, small_cache

from rlhf_tf.render import (
    cached_march,
    cached_native_segments,
    native_segment_kept,
    preintegration,
    raymarch,
)

EXACT = raymarch.RenderSettings(
    step_mm=0.45,
    background=(0.1, 0.2, 0.3),
    specular=0.9,
    diffuse=0.8,
    termination_transmittance=0.0,
    cache_tile_rays=24,
    preintegrate=True,
)
# The same means in float64, their optics in another inlined copy of the
# same code (LLVM's fused multiply-adds may differ): measured <= 2e-15.
RTOL_64 = 1e-12


def _marched(s, seed, azimuth):
  """(tiles, pv, march(keep=True)'s outputs, g_rgb, g_log_t), float64."""
  cache = small_cache(s, seed % 5, azimuth, np.float64)
  table = random_table(seed=seed, dtype=np.float64).at[:, :3, 3].set(0.0)
  pv = preintegration.segment_table(table, s.reference_step_mm)
  out = cached_native_segments.march(cache.tiles, pv, s, keep=True)
  rng = np.random.default_rng(seed)
  g_rgb = jnp.asarray(rng.normal(size=out[0].shape), out[0].dtype)
  g_log_t = jnp.asarray(rng.normal(size=out[1].shape), out[1].dtype)
  return cache.tiles, pv, out, g_rgb, g_log_t


def _vjp(s, tiles, pv, out, g_rgb, g_log_t, ticket):
  rgb, _, steps = out[:3]
  return np.asarray(
      cached_native_segments.march_vjp(
          tiles, pv, s, steps, rgb, g_rgb, g_log_t, ticket
      )
  )


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    azimuth=st.floats(0.0, 360.0),
    shading=st.booleans(),
    threshold=st.sampled_from([0.0, 0.3]),
    per_ray=st.sampled_from([1, native_segment_kept.PER_RAY]),
)
def test_the_records_give_the_tables_cotangent(
    seed, azimuth, shading, threshold, per_ray
):
  default = native_segment_kept.PER_RAY
  native_segment_kept.PER_RAY = per_ray  # An arena of per_ray per ray.
  try:
    _check_records(seed, azimuth, shading, threshold, per_ray)
  finally:
    native_segment_kept.PER_RAY = default


def _check_records(seed, azimuth, shading, threshold, per_ray):
  with jax.enable_x64(True):
    s = EXACT.replace(shading=shading, termination_transmittance=threshold)
    tiles, pv, out, g_rgb, g_log_t = _marched(s, seed, azimuth)
    ticket = out[3]
    res, keys, span = native_segment_kept.Arena.arrays
    assert res.shape == (
        per_ray * tiles.pixels.size,
        native_segment_kept.width(shading),
    )
    assert int(span[:, 1].sum()) > 0
    want = _vjp(s, tiles, pv, out, g_rgb, g_log_t, None)
    got = _vjp(s, tiles, pv, out, g_rgb, g_log_t, ticket)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0.0, atol=RTOL_64 * scale)
    # The records are read: means doubled change the cotangent ...
    with np.errstate(over='ignore', invalid='ignore'):
      res *= 2  # Rows past a group's span hold a reused arena's stale bits.
    changed = _vjp(s, tiles, pv, out, g_rgb, g_log_t, ticket)
    assert np.abs(changed - want).max() > 1e-3 * scale
    # ... unless no key is the segment's: then the table is read.
    keys += 1
    got = _vjp(s, tiles, pv, out, g_rgb, g_log_t, ticket)
    np.testing.assert_array_equal(got, want)
    keys -= 1
    # Another forward (a plain one writes none; this one the same records)
    # takes the arena: the first ticket reads the table.
    plain = cached_native_segments.march(tiles, pv, s)
    for a, b in zip(out[:3], plain):  # The records change no pixel.
      np.testing.assert_array_equal(a, b)
    again = cached_native_segments.march(tiles, pv, s, keep=True)
    assert int(again[3][0]) != int(ticket[0])
    got = _vjp(s, tiles, pv, out, g_rgb, g_log_t, ticket)
    np.testing.assert_array_equal(got, want)
    got = _vjp(s, tiles, pv, again, g_rgb, g_log_t, again[3])
    np.testing.assert_allclose(got, want, rtol=0.0, atol=RTOL_64 * scale)


def test_the_cached_images_gradient_is_the_table_reading_adjoints():
  with jax.enable_x64(True):
    s = EXACT.replace(shading=True, termination_transmittance=0.3)
    cache = small_cache(s, 3, 40.0, np.float64)
    table = random_table(seed=3, dtype=np.float64).at[:, :3, 3].set(0.0)
    ct = jnp.asarray(np.random.default_rng(1).normal(size=(64, 4)))
    image, vjp = jax.vjp(
        lambda t: cached_native_segments.cached_image(cache, t, s), table
    )
    got = vjp(ct)[0]  # Through the records (the custom VJP keeps them).
    pv, pv_vjp = jax.vjp(
        lambda t: preintegration.segment_table(t, s.reference_step_mm), table
    )
    rgb, log_t, steps = cached_native_segments.march(cache.tiles, pv, s)
    g_rgb, g_log_t = cached_march.tiles_cotangent(
        cache.tiles, ct, log_t, s.background
    )
    g_pv = cached_native_segments.march_vjp(
        cache.tiles, pv, s, steps, rgb, g_rgb, g_log_t
    )
    want = pv_vjp(g_pv.reshape(pv.shape))[0]
    assert float(jnp.abs(image[:, 3]).max()) > 0.1
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0.0, atol=RTOL_64 * scale)


def test_renders_in_one_program_and_cotangents_taken_twice():
  """Two renders' forwards run before either adjoint (one arena: the first
  reads the table), a vjp's cotangents taken twice: each the gradient of
  its render alone."""
  with jax.enable_x64(True):
    s = EXACT.replace(shading=True, termination_transmittance=0.3)
    cache = small_cache(s, 2, 70.0, np.float64)
    a = random_table(seed=5, dtype=np.float64).at[:, :3, 3].set(0.0)
    b = random_table(seed=6, dtype=np.float64).at[:, :3, 3].set(0.0)

    def loss(t, w):
      image = cached_native_segments.cached_image(cache, t, s)
      return jnp.sum(w * image)

    rng = np.random.default_rng(2)
    wa, wb = (jnp.asarray(rng.normal(size=(64, 4))) for _ in range(2))
    want_a = jax.grad(loss)(a, wa)
    want_b = jax.grad(loss)(b, wb)
    both = jax.jit(jax.grad(lambda x, y: loss(x, wa) + loss(y, wb), (0, 1)))
    got_a, got_b = both(a, b)
    scale = float(jnp.abs(want_a).max())
    np.testing.assert_allclose(got_a, want_a, rtol=0.0, atol=RTOL_64 * scale)
    np.testing.assert_allclose(got_b, want_b, rtol=0.0, atol=RTOL_64 * scale)
    _, vjp = jax.vjp(
        lambda t: cached_native_segments.cached_image(cache, t, s), a
    )
    first = vjp(wa)[0]
    np.testing.assert_array_equal(vjp(wa)[0], first)
    np.testing.assert_allclose(first, want_a, rtol=0.0, atol=RTOL_64 * scale)
