"""The native pre-integrated cached forward (rlhf_tf.render.
native_segment_forward), which classifies a ray's segments two at a time
and skips blocks and segments by their stored boxes, against a plain walk
that classifies and composites every segment in turn: colour, log T and
segment counts bit for bit, with early ray termination (hypothesis:
random views and tables, steep slopes, shading on and off, thresholds
that stop rays before, at and after a pair's first segment)."""

from hypothesis import given, settings
from hypothesis import strategies as st
import numba
import numpy as np
from render_testing import AXES, random_table, smooth_volume, SPACING
from test_native_segment_boxes import _steeper

from rlhf_tf.render import (
    cached_march,
    cached_native,
    cached_native_segments,
    native_segment_forward,
    native_segment_plan,
    preintegration,
    ray_cache,
    raymarch,
)
from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import native_pool_rows as pool_rows
from rlhf_tf.render import native_segment_regs as regs

EXACT = raymarch.RenderSettings(
    step_mm=1.1,
    background=(0.1, 0.2, 0.3),
    specular=0.9,
    diffuse=0.8,
    termination_transmittance=0.0,
    cache_tile_rays=24,
    preintegrate=True,
)


@numba.njit
def _walk(fields, start, length, first_row, num_steps, table, bins_x,
          bins_y, params, threshold, rgb, log_t, steps):  # fmt: skip
  """Every ray's segments one after another (no boxes, no pairs)."""
  u, v, du, um, vm, dum, d, s, dm, sm = fields
  step, shading, ka, kd, ks, min_den = params
  optics = (shading > 0, ka, kd, ks)
  occ = native_segment_plan.occupancy(table, bins_x)
  f = table.dtype.type
  zero = start.dtype.type(0.0)
  for t in range(start.shape[0]):
    r0 = first_row[t]
    for m in range(start.shape[1]):
      lo = start[t, m]
      hi = lo + length[t, m]
      trans = 1.0
      for i in range(num_steps[t]):
        fi = start.dtype.type(i) * step
        if fi >= hi or trans < threshold:
          break
        steps[t, m] = i + 1
        seg = min(max(hi - fi, zero), step) - min(max(lo - fi, zero), step)
        row = r0 + i
        x_f = pool_rows.end(u, v, du, row, m, f)
        x_m = pool_rows.end(um, vm, dum, row, m, f)
        x_b = pool_rows.end(u, v, du, row + 1, m, f)
        if regs.surely_transparent(occ, bins_x, bins_y, x_f, x_m, x_b,
                                   0.5 * seg):  # fmt: skip
          continue
        shades = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0))
        if shading > 0:
          shades = (
              pool_rows.shade(d, s, row, m),
              pool_rows.shade(dm, sm, row, m),
              pool_rows.shade(d, s, row + 1, m),
          )
        lt, e_r, e_g, e_b, a = regs.segment(
            table, bins_x, bins_y, x_f, x_m, x_b, 0.5 * seg, min_den, shades,
            optics,
        )  # fmt: skip
        rgb[t, m, 0] += trans * e_r
        rgb[t, m, 1] += trans * e_g
        rgb[t, m, 2] += trans * e_b
        log_t[t, m] += lt
        trans = trans * (1.0 - a)


def _plain(tiles, pv, s):
  dtype = np.dtype(pv.dtype)
  n_tiles, tile = tiles.pixels.shape
  rgb = np.zeros((n_tiles, tile, 3), dtype)
  log_t = np.zeros((n_tiles, tile), dtype)
  steps = np.zeros((n_tiles, tile), np.int32)
  ins = [np.asarray(x) for x in cached_native_segments._inputs(tiles, dtype)]
  _walk(
      tuple(ins[:10]),
      ins[10],
      ins[11],
      np.asarray(tiles.first_chunk) * cached_march.CHUNK,
      np.asarray(tiles.num_steps),
      np.asarray(pv).reshape(-1, 8),
      np.int64(pv.shape[1]),
      np.int64(pv.shape[0]),
      cached_native_segments._params(s, dtype),
      float(s.termination_transmittance),
      rgb,
      log_t,
      steps,
  )
  return rgb, log_t, steps


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    azimuth=st.floats(0.0, 360.0),
    shading=st.booleans(),
    threshold=st.sampled_from([0.0, 0.05, 0.3, 0.7]),
    alpha=st.sampled_from([0.3, 0.95]),
    slope_scale=st.sampled_from([1.0, 30.0]),
)
def test_pairs_and_boxes_are_the_plain_walk_bit_for_bit(
    seed, azimuth, shading, threshold, alpha, slope_scale
):
  s = EXACT.replace(shading=shading, termination_transmittance=threshold)
  hu = smooth_volume((10, 10, 10), seed=seed % 5)
  cam = camera_lib.orbit_camera(
      (10, 10, 10), SPACING, azimuth, 20.0, width=8, height=8,
      projection='perspective',
  )  # fmt: skip
  cache = _steeper(
      ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, 8, s),
      slope_scale,
  )
  table = random_table(seed=seed, alpha_max=alpha).at[:, :3, 3].set(0.0)
  pv = preintegration.segment_table(table, s.reference_step_mm)
  got = cached_native_segments.march(cache.tiles, pv, s)
  want = _plain(cache.tiles, pv, s)
  for a, b in zip(got, want):
    np.testing.assert_array_equal(np.asarray(a), b)
  assert int(np.asarray(got[2]).sum()) > 0


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), azimuth=st.floats(0.0, 360.0))
def test_unshaded_walk_without_the_shading_code_is_bit_for_bit(seed, azimuth):
  # lit None (lit_flag of shading 0) compiles the walk without the shading
  # code; lit True keeps the runtime flag, which is off here.
  s = EXACT.replace(shading=False, termination_transmittance=0.05)
  hu = smooth_volume((10, 10, 10), seed=seed % 5)
  cam = camera_lib.orbit_camera(
      (10, 10, 10), SPACING, azimuth, 20.0, width=8, height=8,
      projection='perspective',
  )  # fmt: skip
  cache = ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, 8, s)
  table = random_table(seed=seed, alpha_max=0.95).at[:, :3, 3].set(0.0)
  pv = preintegration.segment_table(table, s.reference_step_mm)
  tiles = cache.tiles
  dtype = np.dtype(pv.dtype)
  params = cached_native_segments._params(s, dtype)
  assert native_segment_forward.lit_flag(params[1], dtype) is None
  assert native_segment_forward.lit_flag(1.0, dtype) is True
  assert native_segment_forward.lit_flag(0.0, np.float64) is True
  n_tiles, tile = tiles.pixels.shape
  # Writable copies, as buffer_callback hands the kernel: read-only views
  # of jax arrays would compile variants of their own (~40 s each).
  ins = [np.array(x) for x in cached_native_segments._inputs(tiles, dtype)]
  outs = []
  for lit in (None, True):
    out = (
        np.zeros((n_tiles, tile, 3), dtype),
        np.zeros((n_tiles, tile), dtype),
        np.zeros((n_tiles, tile), np.int32),
    )
    native_segment_forward.forward_kernel(
        tuple(ins[:10]),
        np.array(cached_native_segments._seg_boxes(tiles)),
        *ins[10:],
        np.array(tiles.num_steps),
        np.array(cached_native_segments._boxes(tiles)),
        np.array(pv).reshape(-1, 8),
        np.int64(pv.shape[1]),
        np.int64(pv.shape[0]),
        params,
        float(s.termination_transmittance),
        cached_native.GROUP,
        1,
        *out,
        None,
        lit,
    )
    outs.append(out)
  for a, b in zip(*outs):
    np.testing.assert_array_equal(a, b)
  assert int(outs[0][2].sum()) > 0
