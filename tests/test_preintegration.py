"""Pre-integrated classification: the segment integral, closed forms, the
direct and cached paths, and the cached march's hand-written adjoint."""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest
from render_testing import AXES, random_table, smooth_volume, SPACING

from rlhf_tf.render import (
    cached_render,
    cached_segments,
    preintegration,
    ray_cache,
    ray_samples,
    raymarch,
    raymarch_naive,
    render_settings,
    sampling,
)
from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render.histogram import JHAxes

SETTINGS = render_settings.RenderSettings(
    step_mm=1.1,
    tile_rays=16,
    sample_levels=1,
    background=(0.1, 0.2, 0.3),
    specular=0.9,
    diffuse=0.8,
    preintegrate=True,
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


def test_absorption_ratio_and_its_gradient():
  with jax.enable_x64(True):
    z = jnp.array([0.0, 1e-5, 5e-3, 0.0101, 0.3, 4.0, 40.0], jnp.float64)
    zs = np.where(np.asarray(z) == 0, 1.0, np.asarray(z))
    expected = np.where(np.asarray(z) == 0, 1.0, -np.expm1(-zs) / zs)
    np.testing.assert_allclose(
        preintegration.absorption_ratio(z), expected, rtol=1e-13
    )
    grad = jax.vmap(jax.grad(preintegration.absorption_ratio))(z)
    expected_grad = np.where(
        np.asarray(z) == 0, -0.5, (np.exp(-zs) - expected) / zs
    )
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-7, atol=1e-12)
    for z0 in (1e-4, 0.2, 3.0):
      check_grads(
          preintegration.absorption_ratio,
          (jnp.float64(z0),),
          order=2,
          modes=('rev',),
      )


def _model_integral(table, u_f, u_b, v_mean, num=200001):
  """Midpoint rule of the model along u from u_f to u_b at row v_mean."""
  by, bx = table.shape[:2]
  sigma = -np.log1p(-table[..., 3])
  integrand = np.concatenate(
      [sigma[..., None], sigma[..., None] * table[..., :3]], -1
  )
  j = min(int(np.floor(v_mean)), by - 2)
  fv = v_mean - j
  row = (1 - fv) * integrand[j] + fv * integrand[j + 1]  # [bx, 4]
  t = (np.arange(num) + 0.5) / num
  u = u_f + t * (u_b - u_f)
  return row[np.clip(np.floor(u).astype(int), 0, bx - 1)].mean(0)


def test_segment_mean_is_the_integral_of_the_model():
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    table = np.asarray(random_table(bins=8, dtype=np.float64))
    pairs = preintegration.row_pairs(
        preintegration.segment_table(jnp.asarray(table), 1.0)
    )
    for _ in range(20):
      u_f, u_b = rng.uniform(0, 8, 2)
      v_f, v_b = rng.uniform(0, 7, 2)
      got = preintegration.lookup_segments(
          pairs, *map(jnp.float64, (u_f, v_f, u_b, v_b)), 8, 8
      )
      want = _model_integral(table, u_f, u_b, 0.5 * (v_f + v_b))
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-9)
    # A tiny segment takes the point value; the same either way round.
    for du in (0.0, 1e-4, -1e-4):
      got = preintegration.lookup_segments(
          pairs, *map(jnp.float64, (3.3, 2.0, 3.3 + du, 2.0)), 8, 8
      )
      np.testing.assert_allclose(
          got, _model_integral(table, 3.3, 3.3, 2.0, 1), rtol=1e-12
      )


def test_segment_mean_gradient_is_finite_at_zero_length_and_exact_beyond():
  with jax.enable_x64(True):
    table = random_table(bins=8, dtype=np.float64)

    def mean(t, u_f, u_b):
      pairs = preintegration.row_pairs(preintegration.segment_table(t, 1.0))
      return preintegration.lookup_segments(pairs, u_f, 2.5, u_b, 3.0, 8, 8)

    g = jax.jacrev(mean, argnums=(0, 1, 2))(
        table, jnp.float64(4.2), jnp.float64(4.2)
    )
    assert all(np.all(np.isfinite(x)) for x in g)
    check_grads(
        mean,
        (table, jnp.float64(1.3), jnp.float64(5.6)),
        order=1,
        modes=('rev',),
        eps=1e-6,
    )


def test_shading_weight_is_the_centroid_of_a_step():
  sigma = 2.0
  for c in (0.0, 0.3, 0.9):  # Extinction 0 before c, sigma after.
    w = preintegration.shading_weight((1 - c) * sigma, 0.0, sigma)
    assert float(w) == pytest.approx((1 + c) / 2, abs=1e-6)
    if c > 0:  # Leaving the material at c.
      w = preintegration.shading_weight(c * sigma, sigma, 0.0)
      assert float(w) == pytest.approx(c / 2, abs=1e-6)
  for args in ((1.0, 1.0, 1.0), (0.5, 0.0, 0.0), (0.0, 0.0, 0.0)):
    assert float(preintegration.shading_weight(*args)) == 0.5
    g = jax.grad(lambda a: preintegration.shading_weight(*a))(jnp.array(args))
    assert np.all(np.isfinite(g))


def test_constant_slab_transmittance_is_exact_in_float64():
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
        jitter=True,  # A phase per pixel: the closed form holds for each.
        preintegrate=True,
    )
    cache = ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, 4, settings)
    depth = shape[1] * SPACING[1]
    expected = -np.expm1(np.log1p(-a) / ref * depth)  # 1 - exp(-sigma L).
    for img in (
        raymarch.render(hu, None, SPACING, AXES, table, cam, settings),
        cached_render.render_cached(cache, table, settings),
    ):
      np.testing.assert_allclose(img[..., 3], expected, rtol=1e-12)
      np.testing.assert_allclose(img[..., 2], 0.9 * expected, rtol=1e-12)


def test_a_sharp_edge_is_integrated_whatever_the_sample_phase():
  """A linear HU ramp along the view through an opacity edge one bin wide:
  every ray sees exactly the depth behind the edge, 1 - (1 - a)^(d / l_ref),
  for any step; point sampling jumps with the phase (wood-grain rings)."""
  shape, spacing, slope, bins, a = (10, 10, 10), (1.0, 1.0, 1.0), 50.0, 64, 0.4
  axes = JHAxes(hu_min=-500.0, hu_max=500.0, grad_max=2 * slope)
  cam = camera_lib.head_camera(
      shape, spacing, width=6, height=6, ortho_width_mm=5.0
  )  # Rays along +y, the ramp's direction.
  y = np.arange(shape[1]) * spacing[1]
  hu = np.broadcast_to((slope * (y - 4.5))[None, :, None], shape)
  edge = 40  # alpha a for x bins >= 40: HU >= -500 + 1000 * 40 / 64 = 125.
  table = np.ones((bins, bins, 4), np.float32)
  table[..., 3] = np.where(np.arange(bins) >= edge, a, 0.0)[None, :]
  depth_behind = (9 * spacing[1] + 0.5 - (4.5 + 125.0 / slope)) * 1.0
  expected = 1.0 - (1.0 - a) ** depth_behind
  # The last half voxel past the last voxel centre is clamped (constant HU).
  for step in (0.37, 1.3):
    settings = render_settings.RenderSettings(
        step_mm=step, shading=False, tile_rays=64, preintegrate=True
    )
    img = raymarch.render(
        jnp.asarray(hu, jnp.float32), None, spacing, axes, table, cam, settings
    )
    np.testing.assert_allclose(img[..., 3], expected, rtol=2e-5)


def test_midpoints_are_where_point_sampling_samples():
  """Pre-integration samples each segment's midpoint with the same trilinear
  field as point sampling's sample of that segment."""
  hu = smooth_volume()
  packed = sampling.packed_volume(hu, SPACING)
  cam = _camera(hu.shape, size=5)
  origins, directions = camera_lib.generate_rays(cam)
  o, d = origins.reshape(-1, 3), directions.reshape(-1, 3)
  phase = jnp.linspace(0.0, 0.95, o.shape[0])
  num = sampling.num_samples(hu.shape, SPACING, SETTINGS.step_mm)
  args = (packed, hu.shape, SPACING, AXES, o, d, phase, num)
  pre = ray_samples.sample_rays(*args, SETTINGS, first=1)
  point = ray_samples.sample_rays(
      *args, SETTINGS.replace(preintegrate=False), first=1
  )
  inside = np.asarray(point['seg']) > 1e-4
  assert inside.sum() > 20
  np.testing.assert_allclose(pre['seg'], point['seg'], atol=1e-5)
  for k in ('x', 'y', 'diffuse', 'specular'):
    np.testing.assert_allclose(
        np.asarray(pre[k + '_mid'])[inside],
        np.asarray(point[k])[inside],
        atol=1e-5,
    )


def test_a_thin_shell_between_the_ends_is_seen_at_the_midpoint():
  """Ends in air, midpoint inside an opaque band (x >= 1/2): each half is
  linear through its sampled ends, so the band covers half of the segment;
  a chord between the ends alone would see nothing."""
  with jax.enable_x64(True):
    bins, a, seg = 8, 0.6, 1.3
    table = (
        jnp.zeros((bins, bins, 4), jnp.float64)
        .at[..., bins // 2 :, :]
        .set(jnp.array([0.9, 0.5, 0.2, a]))
    )
    pairs = preintegration.row_pairs(preintegration.segment_table(table, 1.0))
    samples = dict(
        x=jnp.array([[0.1, 0.2]]),
        y=jnp.array([[0.3, 0.4]]),
        x_mid=jnp.array([[0.9, 0.0]]),
        y_mid=jnp.array([[0.35, 0.0]]),
        seg=jnp.array([[seg, 0.0]]),
        # No slopes to bracket a crest within a half: linear halves.
        slope=jnp.zeros((1, 2)),
        slope_mid=jnp.zeros((1, 2)),
    )
    settings = SETTINGS.replace(shading=False)
    e, log_t = preintegration.classify(pairs, samples, settings, bins, bins)
    inside = 0.5 * (0.4 / 0.8) * seg + 0.5 * (0.4 / 0.7) * seg  # mm.
    alpha = 1.0 - (1.0 - a) ** inside
    np.testing.assert_allclose(-np.expm1(log_t), [[alpha]], rtol=1e-12)
    np.testing.assert_allclose(e[0, 0], alpha * np.array([0.9, 0.5, 0.2]))


@pytest.mark.parametrize(
    'shading,tensor', [(True, False), (False, False), (True, True)]
)
def test_direct_and_cached_paths_agree(shading, tensor):
  hu = smooth_volume()
  table = random_table()
  cam = _camera(hu.shape, size=8)
  # The direct renderer exact (no skipping or early termination: their
  # bounds are tested in tests/test_empty_space.py), as the cache is, and
  # both sample rays in tiles of one size (the float32 rounding of sample
  # positions depends on the compiled tile shape).
  settings = SETTINGS.replace(
      shading=shading,
      tensor_normals=tensor,
      skip_empty_space=False,
      termination_transmittance=0.0,
      cache_tile_rays=SETTINGS.tile_rays,
  )
  direct = raymarch.render(hu, None, SPACING, AXES, table, cam, settings)
  cache = ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, cam, 8, settings, num_buckets=3
  )
  cached = cached_render.render_cached(cache, table, settings)
  point = raymarch.render(
      hu, None, SPACING, AXES, table, cam, settings.replace(preintegrate=False)
  )
  assert float(direct[..., 3].max()) > 0.3
  # float32 rounding of the sample positions (tile shapes differ).
  np.testing.assert_allclose(cached, direct, atol=1e-4)
  # A different classification of the same scene: close, not equal.
  assert 1e-3 < float(jnp.abs(point - direct).max()) < 0.2


def test_cache_refuses_the_other_classification():
  hu = smooth_volume()
  cache = ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, _camera(hu.shape), 8, SETTINGS
  )
  with pytest.raises(ValueError, match='preintegrate'):
    cached_render.render_cached(
        cache, random_table(), SETTINGS.replace(preintegrate=False)
    )
  with pytest.raises(ValueError, match='render_naive point-samples'):
    raymarch_naive.render_naive(
        hu, None, SPACING, AXES, random_table(), _camera(hu.shape), SETTINGS
    )


def test_adjoint_matches_finite_differences_float64():
  with jax.enable_x64(True):
    hu = smooth_volume((6, 6, 6), dtype=np.float64)
    table = random_table(bins=6, dtype=np.float64)
    for shading, tensor in ((True, False), (False, False), (True, True)):
      settings = SETTINGS.replace(shading=shading, tensor_normals=tensor)
      cache = ray_cache.build_ray_cache(
          hu, None, SPACING, AXES, _camera(hu.shape, size=5), 6, settings
      )
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
  cache = ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, cam, (5, 9), SETTINGS, num_buckets=3
  )
  # Non-square, opaque bins and a cotangent on every channel.
  table = jnp.asarray(
      np.random.default_rng(3).uniform(0.05, 0.6, (5, 9, 4)), jnp.float32
  )
  table = table.at[:, 6:, 3].set(1.0)
  loss = lambda img: jnp.sum(img * jnp.array([0.3, -0.5, 0.7, 1.1]))
  g_direct = jax.grad(
      lambda t: loss(raymarch.render(hu, None, SPACING, AXES, t, cam, SETTINGS))
  )(table)
  g_cached = jax.grad(
      lambda t: loss(cached_render.render_cached(cache, t, SETTINGS))
  )(table)
  assert np.all(np.isfinite(g_cached))
  assert float(jnp.abs(g_direct).max()) > 0.1
  np.testing.assert_allclose(g_cached, g_direct, atol=2e-3)


def test_empty_tf_gives_exactly_the_background_and_labels_work():
  hu = smooth_volume()
  cam = _camera(hu.shape, size=8)
  labels = (np.asarray(hu) > 0).astype(np.uint8)
  cache = ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, cam, 8, SETTINGS, labels=labels
  )
  empty = random_table().at[..., 3].set(0.0)
  img = cached_render.render_cached(cache, empty, SETTINGS)
  np.testing.assert_array_equal(
      img[..., :3], jnp.broadcast_to(jnp.array(SETTINGS.background), (8, 8, 3))
  )
  table = random_table()
  rgba, weights, hits = cached_render.render_cached_labels(
      cache, table, 2, SETTINGS
  )
  # Labels run the XLA march; render_cached on CPU the native one, which
  # stops rays at T < termination_transmittance (1e-3) and rounds in
  # float64 (tests/test_cached_native_segments.py).
  np.testing.assert_allclose(
      rgba.reshape(-1, 4),
      cached_segments.cached_image(cache, table, SETTINGS),
      atol=1e-6,
  )
  np.testing.assert_allclose(
      rgba, cached_render.render_cached(cache, table, SETTINGS), atol=1.2e-3
  )
  np.testing.assert_allclose(weights.sum(-1), rgba[..., 3], atol=1e-5)
  assert bool(hits.any())
