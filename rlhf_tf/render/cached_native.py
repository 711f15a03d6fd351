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
  read is one cache line; groups run in parallel on all cores (VTK's
  ray caster uses them too);
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

Differences to ``cached_march`` besides termination: float rounding only
(the same per-sample arithmetic; ~1e-7). Tested against it and against
finite differences in tests/test_cached_native.py.

Concurrency: numba's default threading layer must not be entered from two
threads at once, so the kernels run under one lock (the UI renders in a
background thread). The gradient's per-block partial tables (NUM_BLOCKS,
a fixed count) are summed in a fixed order: results do not depend on the
thread count.
"""

from __future__ import annotations

import functools
import threading

import jax
from jax.experimental import buffer_callback
import jax.numpy as jnp
import numba
import numpy as np

from rlhf_tf.render import cached_march

# Pool columns (rays) walked together by one task: 16 int32 idx = one
# 64-byte cache line per row.
GROUP = 16
# The adjoint accumulates into NUM_BLOCKS partial tables (task b adds into
# table b % NUM_BLOCKS), summed in a fixed order.
NUM_BLOCKS = 8
_LOCK = threading.Lock()


@numba.njit(inline='always')
def _lookup(table, k, bins_x, fx, fy, c):
  """Channel c of the bilinear lookup of flat bins k, k + 1, k + bins_x,
  k + bins_x + 1 of table [bins, 4] (sampling.bilinear_lookup)."""
  a, b = table[k, c], table[k + 1, c]
  bottom = a + fx * (b - a)
  a, b = table[k + bins_x, c], table[k + bins_x + 1, c]
  top = a + fx * (b - a)
  return bottom + fy * (top - bottom)


@numba.njit(parallel=True, nogil=True, cache=True)
def _forward_kernel(
    idx,
    fx,
    fy,
    dif,
    spe,
    start,
    length,
    first_row,
    num_steps,
    table,
    bins_x,
    params,
    log_threshold,
    group,
    rgb_out,
    log_t_out,
    steps_out,
):
  """rgb_out [T, tile, 3], log_t_out [T, tile], steps_out [T, tile] (samples
  composited per ray). params: (step, 1 / reference step, shading, ambient,
  diffuse, specular, 1 - epsneg) in the table's dtype."""
  n_tiles, tile = start.shape
  groups = -(-tile // group)
  one = table.dtype.type(1.0)
  zero = table.dtype.type(0.0)
  q = table.dtype.type(1.0 / 65535.0)
  step, inv_ref, shading, ka, kd, ks, one_minus_eps = params
  for job in numba.prange(n_tiles * groups):
    t = job // groups
    g0 = (job % groups) * group
    n = min(group, tile - g0)
    r0 = first_row[t]
    # Per ray: T_i, log T_i (the output: sum of the lt_i, as cached_march),
    # samples composited so far (-1 once stopped) and C.
    trans = np.ones(n, table.dtype)
    log_t = np.zeros(n, table.dtype)
    steps = np.zeros(n, np.int32)
    rgb = np.zeros((n, 3), table.dtype)
    live = n
    for i in range(num_steps[t]):
      if live == 0:
        break
      fi = table.dtype.type(i) * step
      for m in range(n):
        if steps[m] < i:  # Stopped earlier.
          continue
        j = g0 + m
        lo, hi = start[t, j], start[t, j] + length[t, j]
        if fi >= hi or log_t[m] < log_threshold:
          live -= 1
          continue
        steps[m] = i + 1
        k = idx[r0 + i, j]
        if (
            table[k, 3] == zero
            and table[k + 1, 3] == zero
            and table[k + bins_x, 3] == zero
            and table[k + bins_x + 1, 3] == zero
        ):
          continue  # alpha = 0: transparent (exact).
        seg = min(max(hi - fi, zero), step) - min(max(lo - fi, zero), step)
        wx = table.dtype.type(fx[r0 + i, j]) * q
        wy = table.dtype.type(fy[r0 + i, j]) * q
        alpha = _lookup(table, k, bins_x, wx, wy, 3)
        lt = seg * inv_ref * np.log1p(-min(alpha, one_minus_eps))
        w = trans[m] * -np.expm1(lt)  # T_i a_i.
        lit = one
        spec = zero
        if shading > zero:
          lit = ka + kd * table.dtype.type(dif[r0 + i, j]) * q
          spec = ks * table.dtype.type(spe[r0 + i, j]) * q
        for c in range(3):
          col = _lookup(table, k, bins_x, wx, wy, c)
          if shading > zero:
            col = min(col * lit + spec, one)
          rgb[m, c] += w * col
        trans[m] -= w  # T_{i+1} = T_i (1 - a_i).
        log_t[m] += lt
    for m in range(n):
      for c in range(3):
        rgb_out[t, g0 + m, c] = rgb[m, c]
      log_t_out[t, g0 + m] = log_t[m]
      steps_out[t, g0 + m] = steps[m]


@numba.njit(parallel=True, nogil=True, cache=True)
def _adjoint_kernel(
    idx,
    fx,
    fy,
    dif,
    spe,
    start,
    length,
    first_row,
    steps,
    table,
    bins_x,
    params,
    rgb_total,
    g_rgb,
    g_log_t,
    group,
    g_out,
):
  """Adds the cotangent of the TF table into g_out [NUM_BLOCKS, bins, 4]
  (cached_march.march_tile_vjp, per ray over its steps[t, j] samples)."""
  n_tiles, tile = start.shape
  groups = -(-tile // group)
  one = table.dtype.type(1.0)
  zero = table.dtype.type(0.0)
  q = table.dtype.type(1.0 / 65535.0)
  step, inv_ref, shading, ka, kd, ks, one_minus_eps = params
  g_out[...] = zero
  jobs = n_tiles * groups
  for b in numba.prange(NUM_BLOCKS):
    acc = g_out[b]
    g_col = np.empty(4, table.dtype)
    col = np.empty(3, table.dtype)
    for job in range(b, jobs, NUM_BLOCKS):
      t = job // groups
      g0 = (job % groups) * group
      n = min(group, tile - g0)
      r0 = first_row[t]
      # Per ray: T_i and R = sum_{j>=i} T_j a_j c_j (colour still behind).
      trans = np.ones(n, table.dtype)
      behind = rgb_total[t, g0 : g0 + n].copy()
      most = 0
      for m in range(n):
        most = max(most, steps[t, g0 + m])
      for i in range(most):
        fi = table.dtype.type(i) * step
        for m in range(n):
          j = g0 + m
          if i >= steps[t, j]:
            continue
          lo, hi = start[t, j], start[t, j] + length[t, j]
          seg = min(max(hi - fi, zero), step) - min(max(lo - fi, zero), step)
          k = idx[r0 + i, j]
          wx = table.dtype.type(fx[r0 + i, j]) * q
          wy = table.dtype.type(fy[r0 + i, j]) * q
          lit = one
          spec = zero
          if shading > zero:
            lit = ka + kd * table.dtype.type(dif[r0 + i, j]) * q
            spec = ks * table.dtype.type(spe[r0 + i, j]) * q
          alpha = _lookup(table, k, bins_x, wx, wy, 3)
          w = zero
          if alpha != zero:
            lt = seg * inv_ref * np.log1p(-min(alpha, one_minus_eps))
            w = trans[m] * -np.expm1(lt)  # T_i a_i.
          trans_next = trans[m] - w
          g_lt = g_log_t[t, j]
          for c in range(3):
            base = _lookup(table, k, bins_x, wx, wy, c)
            col[c] = min(base * lit + spec, one) if shading > zero else base
            behind[m, c] -= w * col[c]  # R_i.
            g_lt += g_rgb[t, j, c] * (behind[m, c] - trans_next * col[c])
            # dC/dc_i = T_i a_i, through the shading and its clip at 1.
            g_col[c] = g_rgb[t, j, c] * w
            if shading > zero:
              g_col[c] *= lit if base * lit + spec < one else zero
          # lt = (l / l_ref) log(1 - min(alpha, 1 - eps)).
          g_col[3] = zero
          if alpha < one_minus_eps:
            g_col[3] = -g_lt * (seg * inv_ref) / (one - alpha)
          w00 = (one - wx) * (one - wy)
          w01 = wx * (one - wy)
          w10 = (one - wx) * wy
          w11 = wx * wy
          # alpha = 0: w = 0, so only the alpha channel gets a cotangent.
          for c in range(3 if w == zero else 0, 4):
            acc[k, c] += w00 * g_col[c]
            acc[k + 1, c] += w01 * g_col[c]
            acc[k + bins_x, c] += w10 * g_col[c]
            acc[k + bins_x + 1, c] += w11 * g_col[c]
          trans[m] = trans_next


def _params(settings, dtype):
  """(step, 1 / reference step, shading, ka, kd, ks, 1 - epsneg) in dtype."""
  return tuple(
      dtype.type(v)
      for v in (
          settings.step_mm,
          1.0 / settings.reference_step_mm,
          float(settings.shading),
          settings.ambient,
          settings.diffuse,
          settings.specular,
          1.0 - float(jnp.finfo(dtype).epsneg),
      )
  )


def _log_threshold(settings) -> float:
  thr = float(settings.termination_transmittance)
  return float(np.log(thr)) if thr > 0 else -np.inf


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
  log_thr = dtype.type(_log_threshold(settings))

  def run(ctx, out, *args):
    del ctx
    args = _np(args)
    with _LOCK:
      _forward_kernel(*args, bins_x, params, log_thr, GROUP, *_np(out))

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
    with _LOCK:
      _adjoint_kernel(
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
