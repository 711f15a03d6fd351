"""The native cached march (rlhf_tf.render.cached_native): the same image and
gradient as the XLA march (cached_march) without termination, exact
per-sample skipping of alpha = 0 bins, early ray termination within its
threshold, gradients of the terminated image against finite differences.
"""

import threading

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numba
import numpy as np
import pytest
from render_testing import AXES, random_table, smooth_volume, SPACING

from rlhf_tf.render import (
    cached_march,
    cached_native,
    cached_native_kernels,
    cached_render,
    ray_cache,
    render_settings,
)
from rlhf_tf.render import camera as camera_lib

EXACT = render_settings.RenderSettings(
    step_mm=1.1,
    background=(0.1, 0.2, 0.3),
    specular=0.9,
    diffuse=0.8,
    termination_transmittance=0.0,
    cache_tile_rays=24,
)
WEIGHTS = jnp.array([0.3, -0.5, 0.7, 1.1])


def _cache(settings, shape=(8, 8, 8), size=8, bins=8, dtype=np.float32):
  hu = smooth_volume(shape, dtype=dtype)
  cam = camera_lib.orbit_camera(
      shape,
      SPACING,
      25.0,
      20.0,
      width=size,
      height=size,
      projection='perspective',
  )
  return ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, bins, settings)


def _sparse_table(seed, bins=8, strong=0.9, dtype=np.float32):
  """Alpha 0 in about half the bins (whole 2x2 neighbourhoods among them),
  strongly opaque in the rest: skipping and termination have work to do."""
  rng = np.random.default_rng(seed)
  t = rng.uniform(0.05, 1.0, (bins, bins, 4))
  t[..., 3] = np.where(rng.uniform(size=(bins, bins)) < 0.5, 0.0, strong)
  t[: bins // 2, : bins // 2, 3] = 0.0
  return jnp.asarray(t, dtype)


def _both(cache, table, settings):
  """(native, XLA) images and gradients of a weighted sum of the image."""
  out = []
  for march in (cached_native, cached_march):
    fn = lambda t, m=march: m.cached_image(cache, t, settings)
    out.append(
        (fn(table), jax.grad(lambda t, f=fn: jnp.sum(f(t) * WEIGHTS))(table))
    )
  return out


def test_without_termination_it_is_the_xla_march():
  # reference_step_mm = step_mm: whole segments take alpha itself (no log1p /
  # expm1), the partial first and last ones the corrected alpha.
  for shading, reference in ((True, 1.0), (False, 1.0), (True, 1.1)):
    settings = EXACT.replace(shading=shading, reference_step_mm=reference)
    cache = _cache(settings)
    for table in (random_table(), _sparse_table(1)):
      (img, grad), (img_x, grad_x) = _both(cache, table, settings)
      np.testing.assert_allclose(img, img_x, atol=1e-6)
      assert float(jnp.abs(grad_x).max()) > 0.1
      np.testing.assert_allclose(grad, grad_x, atol=2e-5)


def test_bins_at_alpha_zero_keep_their_alpha_gradient():
  """Skipped samples add nothing to the image, but raising alpha there
  would: the adjoint gives those bins the XLA march's alpha cotangent."""
  cache = _cache(EXACT)
  table = _sparse_table(2)
  (_, grad), (_, grad_x) = _both(cache, table, EXACT)
  zero = np.asarray(table[..., 3]) == 0
  assert float(jnp.abs(grad_x[..., 3][zero]).max()) > 1e-2
  np.testing.assert_allclose(grad[..., 3], grad_x[..., 3], atol=2e-5)


def test_opaque_rays_without_termination_stay_finite():
  """T_N underflows to 0 behind opaque samples when nothing stops the ray:
  the image is opaque and the gradient finite, as the XLA march's."""
  settings = EXACT.replace(reference_step_mm=EXACT.step_mm)
  cache = _cache(settings)
  table = random_table().at[..., 3].set(1.0)
  (img, grad), (img_x, grad_x) = _both(cache, table, settings)
  np.testing.assert_allclose(img, img_x, atol=1e-6)
  assert np.all(np.isfinite(np.asarray(grad)))
  np.testing.assert_allclose(grad, grad_x, atol=2e-5)


def test_a_non_square_table():
  cache = _cache(EXACT, bins=(5, 9))
  table = jnp.asarray(
      np.random.default_rng(3).uniform(0.05, 0.9, (5, 9, 4)), jnp.float32
  )
  (img, grad), (img_x, grad_x) = _both(cache, table, EXACT)
  np.testing.assert_allclose(img, img_x, atol=1e-6)
  np.testing.assert_allclose(grad, grad_x, atol=2e-5)


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    threshold=st.sampled_from([1e-3, 2e-2, 0.2]),
)
def test_termination_changes_no_pixel_by_more_than_its_threshold(
    seed, threshold
):
  cache = _cache(EXACT)
  table = _sparse_table(seed)
  exact = cached_native.cached_image(cache, table, EXACT)
  stopped = cached_native.cached_image(
      cache, table, EXACT.replace(termination_transmittance=threshold)
  )
  assert float(jnp.abs(stopped - exact).max()) <= threshold
  _, _, steps = cached_native.march(
      cache.tiles, table, EXACT.replace(termination_transmittance=threshold)
  )
  _, _, all_steps = cached_native.march(cache.tiles, table, EXACT)
  assert np.all(np.asarray(steps) <= np.asarray(all_steps))
  if threshold == 0.2:
    assert int(steps.sum()) < int(all_steps.sum())  # Some rays stopped.


def test_gradient_of_the_terminated_image_matches_finite_differences():
  with jax.enable_x64(True):
    settings = EXACT.replace(termination_transmittance=0.05)
    for shading, reference in ((True, 1.0), (False, 1.0), (True, 1.1)):
      s = settings.replace(shading=shading, reference_step_mm=reference)
      cache = _cache(s, shape=(6, 6, 6), size=5, bins=6, dtype=np.float64)
      table = _sparse_table(4, bins=6, strong=0.7, dtype=np.float64)
      _, _, steps = cached_native.march(cache.tiles, table, s)
      _, _, all_steps = cached_native.march(
          cache.tiles, table, s.replace(termination_transmittance=0.0)
      )
      assert int(steps.sum()) < int(all_steps.sum())
      check_grads(
          lambda t, c=cache, s=s: cached_native.cached_image(c, t, s),
          (table,),
          order=1,
          modes=('rev',),
          eps=1e-6,
      )


def test_render_cached_on_cpu_is_native_and_vmaps():
  settings = EXACT.replace(termination_transmittance=1e-3)
  cache = _cache(settings)
  tables = jnp.stack([_sparse_table(s) for s in range(3)])
  batched = jax.vmap(lambda t: cached_render.render_cached(cache, t, settings))(
      tables
  )
  for i in range(3):
    one = cached_native.cached_image(cache, tables[i], settings)
    np.testing.assert_allclose(batched[i].reshape(-1, 4), one, atol=1e-6)


def test_calls_from_two_threads_give_the_same_images():
  cache = _cache(EXACT)
  tables = [_sparse_table(s) for s in range(4)]
  render = jax.jit(lambda t: cached_native.cached_image(cache, t, EXACT))
  expected = [np.asarray(render(t)) for t in tables]
  got = {}

  def work(k):
    for _ in range(3):
      for i, t in enumerate(tables):
        got[(k, i)] = np.asarray(render(t))

  threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
  for th in threads:
    th.start()
  for th in threads:
    th.join()
  for (_, i), img in got.items():
    np.testing.assert_array_equal(img, expected[i])


def test_the_table_cotangent_does_not_depend_on_the_thread_count():
  """The adjoint kernel fills NUM_BLOCKS partial tables (a fixed count, each
  a fixed set of rays in a fixed order): one thread and two give the same
  bits."""
  if numba.config.NUMBA_NUM_THREADS < 2:
    pytest.skip('numba has one thread')
  cache = _cache(EXACT)
  table = _sparse_table(5)
  rgb, _, steps = cached_native.march(cache.tiles, table, EXACT)
  rng = np.random.default_rng(0)
  g_rgb = rng.normal(size=rgb.shape).astype(np.float32)
  g_log_t = rng.normal(size=steps.shape).astype(np.float32)
  # Writable copies, as buffer_callback hands the kernel: read-only views
  # of jax arrays would compile a variant of their own (~40 s).
  inputs = [
      np.array(a)
      for a in cached_native._inputs(cache.tiles, table, np.dtype(np.float32))
  ]
  out = []
  for threads in (1, 2):
    g = np.empty((cached_native.NUM_BLOCKS, 64, 4), np.float32)
    numba.set_num_threads(threads)
    try:
      cached_native_kernels.adjoint_kernel(
          *inputs,
          np.array(steps),
          np.array(table).reshape(-1, 4),
          np.int64(8),
          cached_native._params(EXACT, np.dtype(np.float32)),
          np.array(rgb),
          g_rgb,
          g_log_t,
          cached_native.GROUP,
          g,
      )
    finally:
      numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    out.append(g)
  assert np.abs(out[0]).max() > 0
  np.testing.assert_array_equal(out[0], out[1])
