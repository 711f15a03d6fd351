"""The clear blocks' stored weights (rlhf_tf.render.native_clear_blocks):
the adjoint that scatters them gives the cotangent of the one that walks
every clear block's segments, up to the float32 rounding of the stored
weights (a float64 table), shaded or not,
with early ray termination; a block marked WALK is walked (bit for bit)."""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from render_testing import random_table, small_cache

from rlhf_tf.render import (
    cached_native_segments,
    native_clear_blocks,
    native_segment_plan,
    preintegration,
    raymarch,
)
from rlhf_tf.render.native_block_boxes import BLOCK

EXACT = raymarch.RenderSettings(
    step_mm=0.45,
    background=(0.1, 0.2, 0.3),
    specular=0.9,
    diffuse=0.8,
    termination_transmittance=0.0,
    cache_tile_rays=24,
    preintegrate=True,
)
# Weights are stored in the pool's dtype (float32: the samples' own
# precision), so a float64 cotangent is the walk's to ~eps32 of its scale.
WEIGHT_RTOL = 2e-7  # (Measured: 0.5-3e-8.)


def _cache(s, seed, azimuth):
  return small_cache(s, seed, azimuth, np.float64)


def _scattered(tiles, pv, steps):
  """How many blocks the adjoint takes from the weights: clear (the
  table's extinction leaves their box empty), walked into, not WALK."""
  occ = native_segment_plan.occupancy(np.asarray(pv).reshape(-1, 8), 8)
  box = np.asarray(tiles.box).astype(np.int64)
  span = np.asarray(tiles.clear_span)
  first = np.asarray(tiles.first_chunk) * 32 // BLOCK
  steps = np.asarray(steps)
  out = 0
  for t in range(first.size):
    for i0 in range(0, int(steps[t].max(initial=0)), BLOCK):
      k = first[t] + i0 // BLOCK
      c0, c1, r0, r1 = box[k].T
      clear = occ[r1, c1] - occ[r0, c1] - occ[r1, c0] + occ[r0, c0] == 0
      walked = steps[t] > i0
      out += int(np.sum(clear & walked & (span[k, :, 1] >= 0)))
  return out


def _vjps(cache, table, s, *variants):
  pv = preintegration.segment_table(table, s.reference_step_mm)
  rgb, log_t, steps = cached_native_segments.march(cache.tiles, pv, s)
  rng = np.random.default_rng(0)
  g_rgb = jnp.asarray(rng.normal(size=rgb.shape), rgb.dtype)
  g_log_t = jnp.asarray(rng.normal(size=log_t.shape), log_t.dtype)
  out = [
      cached_native_segments.march_vjp(tiles, pv, s, steps, rgb, g_rgb, g_log_t)
      for tiles in variants
  ]
  return pv, steps, out


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    azimuth=st.floats(0.0, 360.0),
    shading=st.booleans(),
    threshold=st.sampled_from([0.0, 0.3]),
    clear_columns=st.integers(6, 8),
)
def test_stored_weights_give_the_walks_cotangent(
    seed, azimuth, shading, threshold, clear_columns
):
  with jax.enable_x64(True):
    s = EXACT.replace(shading=shading, termination_transmittance=threshold)
    cache = _cache(s, seed % 5, azimuth)
    tiles = cache.tiles
    assert tiles.clear_span is not None
    assert tiles.clear_weight.dtype == tiles.u.dtype  # float32.
    assert tiles.clear_weight.shape[1] == (3 if shading else 1)
    table = random_table(seed=seed, dtype=np.float64)
    table = table.at[:, :clear_columns, 3].set(0.0)
    walked = tiles.replace(clear_span=None)
    pv, steps, (got, want) = _vjps(cache, table, s, tiles, walked)
    assert _scattered(tiles, pv, steps) > 0
    scale = float(jnp.abs(want).max())
    assert scale > 1e-3
    # The float64 walk's sums, rounded to the pool's float32 once per entry.
    np.testing.assert_allclose(got, want, rtol=0.0, atol=WEIGHT_RTOL * scale)


def test_a_block_marked_walk_is_walked():
  with jax.enable_x64(True):
    cache = _cache(EXACT, 1, 40.0)
    tiles = cache.tiles
    marked = tiles.replace(
        clear_span=tiles.clear_span.at[..., 1].set(native_clear_blocks.WALK)
    )
    table = random_table(seed=2, dtype=np.float64).at[:, :6, 3].set(0.0)
    pv, steps, (got, want) = _vjps(
        cache, table, EXACT, marked, tiles.replace(clear_span=None)
    )
    assert _scattered(tiles, pv, steps) > 0
    np.testing.assert_array_equal(got, want)
