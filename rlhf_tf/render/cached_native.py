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
  ray caster uses them too), worker w of one per thread taking groups w,
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

Differences to ``cached_march`` besides termination: float rounding only
(~1e-7; T_N is floored at the dtype's smallest normal number, which only an
unterminated opaque ray reaches). Tested against it and against
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


@numba.njit(inline='always')
def _transparent(table, k, bins_x):
  """Whether the four bins of a lookup all have alpha = 0."""
  zero = table.dtype.type(0.0)
  return (
      table[k, 3] == zero
      and table[k + 1, 3] == zero
      and table[k + bins_x, 3] == zero
      and table[k + bins_x + 1, 3] == zero
  )


@numba.njit(inline='always')
def _segment(lo, hi, fi, step, zero):
  """l_i: the part of sample i's segment [fi, fi + step) inside [lo, hi)
  (sampling.segment_length)."""
  return min(max(hi - fi, zero), step) - min(max(lo - fi, zero), step)


@numba.njit(inline='always')
def _opacity(alpha, seg, ref, one_minus_eps):
  """a_i = 1 - (1 - alpha)^(l_i / l_ref), alpha clamped to 1 - epsneg
  (compositing.opacity_log_transmittance). A whole segment of the
  reference length (every sample but a ray's first and last when the step
  is the reference step, as in the project's scenes) is alpha itself: no
  log1p / expm1, which cost more than the rest of a sample."""
  a = min(alpha, one_minus_eps)
  if seg == ref:
    return a
  return -np.expm1(seg / ref * np.log1p(-a))


@numba.njit(nogil=True)
def _forward_group(
    idx,
    fx,
    fy,
    dif,
    spe,
    lo,
    hi,
    r0,
    num,
    table,
    bins_x,
    params,
    threshold,
    rgb,
    trans,
    steps,
):
  """Marches the n rays of one group (pool columns: those of lo, hi [n]):
  fills rgb [n, 3] (C), trans [n] (T_N) and steps [n] (samples
  composited). idx ... spe: [rows, n] views of the group's pool columns."""
  n = lo.shape[0]
  one = table.dtype.type(1.0)
  zero = table.dtype.type(0.0)
  q = table.dtype.type(1.0 / 65535.0)
  step, ref, shading, ka, kd, ks, one_minus_eps = params
  rgb[...] = zero
  trans[...] = one
  steps[...] = 0
  done = np.zeros(n, np.bool_)
  live = n
  for i in range(num):
    if live == 0:
      break
    fi = table.dtype.type(i) * step
    row = r0 + i
    for m in range(n):
      if done[m]:
        continue
      if fi >= hi[m] or trans[m] < threshold:
        done[m] = True
        live -= 1
        continue
      steps[m] = i + 1
      k = idx[row, m]
      if _transparent(table, k, bins_x):
        continue  # alpha = 0: transparent (exact).
      seg = _segment(lo[m], hi[m], fi, step, zero)
      wx = table.dtype.type(fx[row, m]) * q
      wy = table.dtype.type(fy[row, m]) * q
      a = _opacity(
          _lookup(table, k, bins_x, wx, wy, 3), seg, ref, one_minus_eps
      )
      w = trans[m] * a  # T_i a_i.
      if shading > zero:
        lit = ka + kd * table.dtype.type(dif[row, m]) * q
        spec = ks * table.dtype.type(spe[row, m]) * q
        for c in range(3):
          col = _lookup(table, k, bins_x, wx, wy, c)
          rgb[m, c] += w * min(col * lit + spec, one)
      else:
        for c in range(3):
          rgb[m, c] += w * _lookup(table, k, bins_x, wx, wy, c)
      trans[m] *= one - a  # T_{i+1} = T_i (1 - a_i).


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
    threshold,
    group,
    workers,
    rgb_out,
    log_t_out,
    steps_out,
):
  """rgb_out [T, tile, 3], log_t_out [T, tile], steps_out [T, tile] (samples
  composited per ray). params: (step, reference step, shading, ambient,
  diffuse, specular, 1 - epsneg) in the table's dtype; threshold: the
  termination transmittance (0: none). Worker w of ``workers`` (one per
  thread) takes groups w, w + workers, ...: neighbouring groups hold rays
  of similar length, so every worker gets the same share of the work
  (numba's prange hands each thread one contiguous block of iterations, and
  tiles near the end of the pool are much shorter)."""
  n_tiles, tile = start.shape
  groups = -(-tile // group)
  jobs = n_tiles * groups
  tiny = table.dtype.type(np.finfo(table.dtype).tiny)
  for wk in numba.prange(workers):
    for job in range(wk, jobs, workers):
      t = job // groups
      g0 = (job % groups) * group
      g1 = min(g0 + group, tile)
      r0 = first_row[t]
      num = num_steps[t]
      lo = start[t, g0:g1]
      hi = lo + length[t, g0:g1]
      _forward_group(
          idx[:, g0:g1],
          fx[:, g0:g1],
          fy[:, g0:g1],
          dif[:, g0:g1],
          spe[:, g0:g1],
          lo,
          hi,
          r0,
          num,
          table,
          bins_x,
          params,
          threshold,
          rgb_out[t, g0:g1],
          log_t_out[t, g0:g1],
          steps_out[t, g0:g1],
      )
      # log T_N (the output; T_N >= tiny keeps it finite where T underflows
      # without termination: the pixel is opaque either way).
      for m in range(g1 - g0):
        log_t_out[t, g0 + m] = np.log(max(log_t_out[t, g0 + m], tiny))


@numba.njit(nogil=True)
def _adjoint_group(
    idx,
    fx,
    fy,
    dif,
    spe,
    lo,
    hi,
    r0,
    steps,
    table,
    bins_x,
    params,
    rgb_total,
    g_rgb,
    g_log_t,
    acc,
):
  """Adds the group's share of the TF table's cotangent into acc [bins, 4]
  (cached_march.march_tile_vjp, each ray over its steps[m] samples, with
  the forward's arithmetic: the same T_i and a_i). rgb_total [n, 3],
  g_rgb [n, 3], g_log_t [n]: the forward's C and the cotangents of C and
  log T_N; the rest as _forward_group."""
  n = lo.shape[0]
  one = table.dtype.type(1.0)
  zero = table.dtype.type(0.0)
  q = table.dtype.type(1.0 / 65535.0)
  step, ref, shading, ka, kd, ks, one_minus_eps = params
  g_col = np.empty(4, table.dtype)
  col = np.empty(3, table.dtype)
  # Per ray: T_i and R = sum_{j>=i} T_j a_j c_j (colour still behind).
  trans = np.ones(n, table.dtype)
  behind = rgb_total.copy()
  most = 0
  for m in range(n):
    most = max(most, steps[m])
  for i in range(most):
    fi = table.dtype.type(i) * step
    row = r0 + i
    for m in range(n):
      if i >= steps[m]:
        continue
      seg = _segment(lo[m], hi[m], fi, step, zero)
      k = idx[row, m]
      wx = table.dtype.type(fx[row, m]) * q
      wy = table.dtype.type(fy[row, m]) * q
      lit = one
      spec = zero
      if shading > zero:
        lit = ka + kd * table.dtype.type(dif[row, m]) * q
        spec = ks * table.dtype.type(spe[row, m]) * q
      alpha = _lookup(table, k, bins_x, wx, wy, 3)
      a = zero
      if alpha != zero:
        a = _opacity(alpha, seg, ref, one_minus_eps)
      w = trans[m] * a  # T_i a_i.
      trans_next = trans[m] * (one - a)
      g_lt = g_log_t[m]
      for c in range(3):
        base = _lookup(table, k, bins_x, wx, wy, c)
        col[c] = min(base * lit + spec, one) if shading > zero else base
        behind[m, c] -= w * col[c]  # R_i.
        g_lt += g_rgb[m, c] * (behind[m, c] - trans_next * col[c])
        # dC/dc_i = T_i a_i, through the shading and its clip at 1.
        g_col[c] = g_rgb[m, c] * w
        if shading > zero:
          g_col[c] *= lit if base * lit + spec < one else zero
      # lt = (l / l_ref) log(1 - min(alpha, 1 - eps)).
      g_col[3] = zero
      if alpha < one_minus_eps:
        g_col[3] = -g_lt * (seg / ref) / (one - alpha)
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
  """Adds the cotangent of the TF table into g_out [NUM_BLOCKS, bins, 4]:
  block b takes groups b, b + NUM_BLOCKS, ... (the same share of the work
  each; summed in a fixed order, so results do not depend on the number of
  threads)."""
  n_tiles, tile = start.shape
  groups = -(-tile // group)
  jobs = n_tiles * groups
  g_out[...] = table.dtype.type(0.0)
  for b in numba.prange(NUM_BLOCKS):
    for job in range(b, jobs, NUM_BLOCKS):
      t = job // groups
      g0 = (job % groups) * group
      g1 = min(g0 + group, tile)
      lo = start[t, g0:g1]
      _adjoint_group(
          idx[:, g0:g1],
          fx[:, g0:g1],
          fy[:, g0:g1],
          dif[:, g0:g1],
          spe[:, g0:g1],
          lo,
          lo + length[t, g0:g1],
          first_row[t],
          steps[t, g0:g1],
          table,
          bins_x,
          params,
          rgb_total[t, g0:g1],
          g_rgb[t, g0:g1],
          g_log_t[t, g0:g1],
          g_out[b],
      )


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
    with _LOCK:
      _forward_kernel(
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
