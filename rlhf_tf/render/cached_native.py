"""The cached march on CPU as native code, with early ray termination.

``rlhf_tf.render.cached_march`` runs the march as XLA loops over whole rows
of a tile: every ray of the tile pays for every sample, which on CPU costs
~15 ns per sample, half of it the 16-value TF gather, and it cannot stop a
single ray or skip a single sample. Here the same march (same formulas, same
cache, same custom VJP structure) is compiled by numba and run through
``jax.experimental.buffer_callback``, which hands the cache's buffers over
without a copy:

- the rays of a tile go in groups of GROUP neighbouring pool columns (rays
  of similar length: the cache sorts them), walked row by row, so each row
  read is one cache line; on CPU the cache is built in tiles of GROUP rays
  (``native_layout``), so a group's rows are also contiguous (in 4096-ray
  tiles each row was on another page: half the forward's time went to
  waiting for memory); groups run in parallel on all cores (VTK's ray
  caster uses them too), worker w of one per thread taking groups w,
  w + workers, ... (numba's prange gives each thread one contiguous block
  of iterations, and the tiles at the end of the pool hold the short rays:
  in blocks, one of two threads did ~90 % of Cranium's work);
- a whole segment of the reference length (every sample but a ray's first
  and last when step = reference step, as in the project's scenes) takes
  alpha itself, a_i = alpha, with T_{i+1} = T_i (1 - a_i) and log T_N =
  log T_N at the end: no log1p / expm1 per sample (they cost more than the
  rest of a sample); other segments take a_i = -expm1((l_i / l_ref)
  log1p(-alpha));
- a sample whose four TF bins all have alpha = 0 is transparent for this TF
  (alpha = 0, log(1 - alpha) = 0: it adds nothing and leaves T unchanged)
  and costs the forward four loads (exact, whatever the TF: empty space is
  decided per TF at render time, per sample);
- a ray stops once its transmittance T_i < settings.termination_transmittance
  (early ray termination, as in the direct renderer; default 1e-3): what
  it leaves out adds at most T_i < 1e-3 to any channel of its pixel
  (colours and background are in [0, 1]), so a pixel differs from the full
  march by < the threshold (0: march to the end, exact);
- the adjoint re-walks each ray over exactly the samples the forward
  composited (their number per ray is a residual of the forward), so the
  gradient is exact for the rendered (terminated) function. It cannot skip
  the transparent samples: d C / d alpha of a bin at alpha = 0 is not 0.

The kernels are in ``cached_native_kernels``.

Differences to ``cached_march`` besides termination: float rounding only
(~1e-7; T_N is floored at the dtype's smallest normal number, which only an
unterminated opaque ray reaches). Tested against it and against
finite differences in tests/test_cached_native.py.

Concurrency: numba's default threading layer must not be entered from two
threads at once, so the kernels run under native_lock.LOCK, shared by all
native kernels (the UI renders in background threads). The gradient's
per-block partial tables (NUM_BLOCKS, a fixed count) are summed in a fixed
order: results do not depend on the thread count.
"""

from __future__ import annotations

import functools

import jax
from jax.experimental import buffer_callback
import jax.numpy as jnp
import numba
import numpy as np

from rlhf_tf.render import cached_march, native_lock
from rlhf_tf.render.cached_native_kernels import (
    adjoint_kernel,
    forward_kernel,
    NUM_BLOCKS,
)
from rlhf_tf.render.native_layout import GROUP

# One numba call at a time, process-wide (native_lock).
LOCK = native_lock.LOCK


def _params(settings, dtype):
  """(step, reference step, shading, ka, kd, ks, 1 - epsneg) in dtype."""
  return tuple(
      dtype.type(v)
      for v in (
          settings.step_mm,
          settings.reference_step_mm,
          float(settings.shading),
          settings.ambient,
          settings.diffuse,
          settings.specular,
          1.0 - float(jnp.finfo(dtype).epsneg),
      )
  )


def _shading_fields(tiles):
  """(diffuse, specular) pools, or empty stand-ins without shading."""
  if tiles.diffuse is None:
    empty = jnp.zeros((0, tiles.idx.shape[1]), jnp.uint16)
    return empty, empty
  return tiles.diffuse, tiles.specular


def _np(buffers):
  return [np.asarray(b) for b in buffers]


def _inputs(tiles, table, dtype):
  """The kernels' common leading inputs (buffers)."""
  dif, spe = _shading_fields(tiles)
  return (
      tiles.idx,
      tiles.fx,
      tiles.fy,
      dif,
      spe,
      tiles.start.astype(dtype),
      tiles.length.astype(dtype),
      tiles.first_chunk * cached_march.CHUNK,
  )


def march(tiles, tf_table, settings):
  """Forward over every tile: (C [T, tile, 3] premultiplied colour,
  log T_N [T, tile], samples composited per ray [T, tile] int32).

  tf_table: [bins_y, bins_x, 4]."""
  dtype = tf_table.dtype
  n_tiles, tile = tiles.pixels.shape
  bins_x = np.int64(tf_table.shape[1])
  params = _params(settings, dtype)
  threshold = dtype.type(settings.termination_transmittance)

  def run(ctx, out, *args):
    del ctx
    args = _np(args)
    with LOCK:
      forward_kernel(
          *args,
          bins_x,
          params,
          threshold,
          GROUP,
          numba.get_num_threads(),
          *_np(out),
      )

  return buffer_callback.buffer_callback(
      run,
      (
          jax.ShapeDtypeStruct((n_tiles, tile, 3), dtype),
          jax.ShapeDtypeStruct((n_tiles, tile), dtype),
          jax.ShapeDtypeStruct((n_tiles, tile), jnp.int32),
      ),
      vmap_method='sequential',
  )(
      *_inputs(tiles, tf_table, dtype),
      tiles.num_steps,
      tf_table.reshape(-1, 4),
  )


def march_vjp(tiles, tf_table, settings, steps, rgb, g_rgb, g_log_t):
  """The cotangent [bins_y * bins_x, 4] of the TF table (flat bins), from
  the forward's outputs (march) and the cotangents g_rgb [T, tile, 3],
  g_log_t [T, tile] of C and log T_N."""
  dtype = tf_table.dtype
  bins = tf_table.shape[0] * tf_table.shape[1]
  bins_x = np.int64(tf_table.shape[1])
  params = _params(settings, dtype)

  def run(ctx, out, *args):
    del ctx
    args = _np(args)
    with LOCK:
      adjoint_kernel(
          *args[:10], bins_x, params, *args[10:], GROUP, np.asarray(out)
      )

  partial = buffer_callback.buffer_callback(
      run,
      jax.ShapeDtypeStruct((NUM_BLOCKS, bins, 4), dtype),
      vmap_method='sequential',
  )(
      *_inputs(tiles, tf_table, dtype),
      steps,
      tf_table.reshape(-1, 4),
      rgb,
      g_rgb,
      g_log_t,
  )
  return functools.reduce(jnp.add, [partial[b] for b in range(NUM_BLOCKS)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def cached_image(cache, tf_table, settings):
  """[H*W, 4] RGBA of a cached view (cached_march.cached_image's contract,
  with early ray termination at settings.termination_transmittance)."""
  return _cached_image_fwd(cache, tf_table, settings)[0]


def _cached_image_fwd(cache, tf_table, settings):
  rgb, log_t, steps = march(cache.tiles, tf_table, settings)
  image, _, _ = cached_march.scatter_image(
      cache, rgb, log_t, None, None, settings, 0
  )
  return image, (cache, tf_table, rgb, log_t, steps)


def _cached_image_bwd(settings, residuals, ct):
  cache, tf_table, rgb, log_t, steps = residuals
  tiles = cache.tiles
  g_rgb, g_log_t = cached_march.tiles_cotangent(
      tiles, jnp.asarray(ct), log_t, settings.background
  )
  g_table = march_vjp(
      tiles,
      tf_table,
      settings,
      steps,
      rgb,
      g_rgb,
      g_log_t,
  )
  return (
      jax.tree_util.tree_map(cached_march.zero_cotangent, cache),
      g_table.reshape(tf_table.shape),
  )


cached_image.defvjp(_cached_image_fwd, _cached_image_bwd)
