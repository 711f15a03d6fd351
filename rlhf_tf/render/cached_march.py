"""Rendering from a ray cache: a forward march and its hand-written adjoint.

The cache (``rlhf_tf.render.ray_cache``) stores each bucket's samples
sample-major, [S, R]: S sample indices along R rays. Both passes walk the
sample index i = 0 .. S-1 for all R rays at once, so every step reads
contiguous rows and is one fused elementwise kernel over [R] carries (one
16-value gather per sample from ``sampling.corner_table``). On CPU this is
~2.3x faster than compositing [rays, S] tiles with cumulative sums, whose
[tile, S, 16] intermediates XLA materialises.

Forward (emission-absorption, front to back; compositing.composite_log):

  lt_i = (l_i / l_ref) log(1 - alpha_i)        per-sample log transmittance
  T_i  = exp(sum_{j<i} lt_j),  a_i = 1 - exp(lt_i)
  C    = sum_i T_i a_i c_i,    T_N = exp(sum_i lt_i)

Reverse (a custom VJP that re-walks the rays front to back, as DiffDVR
does, instead of storing per-sample intermediates): with R_i = C - sum_{j<=i}
T_j a_j c_j the colour still to come behind sample i,

  dC/dc_i   = T_i a_i
  dC/dlt_i  = R_i - T_{i+1} c_i        (no division by 1 - a_i, so a_i = 1
  dT_N/dlt_i = T_N                       is harmless)

then through the shading, the opacity correction and the bilinear lookup to
the 2x2 bins, scatter-added into the [bins_y * bins_x, 4] table cotangent.
Memory: the [R] carries of one bucket and one gradient table, whatever the
number of samples. Exact: tested against finite differences in float64
(tests/test_cached_march.py, tests/test_raymarch.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import compositing, sampling

_FIXED = 65535.0
# Sample steps per loop iteration, measured on 2 CPU cores (Cranium, 256^2):
# the forward is 1.5x faster unrolled 8 times than not (16: no faster, twice
# the compile time, 9 s); the adjoint is fastest at 2 (beyond, XLA fuses
# across steps and recomputes the lookups).
MARCH_UNROLL = 8
VJP_UNROLL = 2


def quantise(v):
  """[0, 1] floats -> uint16 fixed point (step 1 / 65535)."""
  return jnp.round(jnp.clip(v, 0.0, 1.0) * _FIXED).astype(jnp.uint16)


def dequantise(q, dtype=jnp.float32):
  return q.astype(dtype) * (1.0 / _FIXED)


def _fields(bucket, labels: bool):
  names = ('idx', 'fx', 'fy', 'diffuse', 'specular') + (
      ('label',) if labels else ()
  )
  return {
      k: getattr(bucket, k) for k in names if getattr(bucket, k) is not None
  }


def chord_ends(bucket, dtype):
  """(start, end) [R] of each ray's chord from its first depth-grid point."""
  start = bucket.start.astype(dtype)
  return start, start + bucket.length.astype(dtype)


def _step_samples(bucket, fields, corners, i, settings, dtype, ends):
  """Sample i of every ray of a bucket: the row's fields, the segment length
  l_i [R] (ends: chord_ends), the TF lookup rgba [R, 4], the shaded colour
  c_i [R, 3] and lt_i [R]."""
  t = {
      k: jax.lax.dynamic_index_in_dim(v, i, 0, keepdims=False)
      for k, v in fields.items()
  }
  fi = i.astype(dtype)
  t['seg'] = sampling.segment_length(
      ends[1], fi, settings.step_mm
  ) - sampling.segment_length(ends[0], fi, settings.step_mm)
  t['fx'], t['fy'] = dequantise(t['fx'], dtype), dequantise(t['fy'], dtype)
  rgba = sampling.bilinear_lookup(corners, t['idx'], t['fx'], t['fy'])
  col = rgba[..., :3]
  if settings.shading:
    t['diffuse'] = dequantise(t['diffuse'], dtype)
    t['specular'] = dequantise(t['specular'], dtype)
    col = compositing.shade(
        col,
        t['diffuse'],
        t['specular'],
        settings.ambient,
        settings.diffuse,
        settings.specular,
    )
  log_trans = compositing.opacity_log_transmittance(
      rgba[..., 3], t['seg'], settings.reference_step_mm
  )
  return t, rgba, col, log_trans


def unroll(factor, num):
  """fori_loop's unroll for a loop of num steps (at least 1, at most num)."""
  return max(1, min(factor, num))


def march_bucket(bucket, corners, settings, num_labels: int, dtype):
  """Forward pass over one bucket.

  Returns (C [R, 3] premultiplied colour, log T_N [R], and with num_labels
  > 0 the per-label weights sum_i T_i a_i [label_i = g] [R, G] and hits
  [R, G] (rays that meet label g in the box at all); else None, None)."""
  fields = _fields(bucket, bool(num_labels))
  num, rays = bucket.idx.shape
  ends = chord_ends(bucket, dtype)

  def body(i, carry):
    log_t, rgb, weights, hits = carry
    t, _, col, log_trans = _step_samples(
        bucket, fields, corners, i, settings, dtype, ends
    )
    w = jnp.exp(log_t) * -jnp.expm1(log_trans)  # T_i a_i.
    rgb = rgb + w[..., None] * col
    if num_labels:
      onehot = jax.nn.one_hot(t['label'], num_labels, dtype=dtype)
      weights = weights + w[..., None] * onehot
      hits = hits | ((onehot > 0) & (t['seg'] > 0)[..., None])
    return log_t + log_trans, rgb, weights, hits

  init = (
      jnp.zeros((rays,), dtype),
      jnp.zeros((rays, 3), dtype),
      jnp.zeros((rays, num_labels), dtype) if num_labels else None,
      jnp.zeros((rays, num_labels), bool) if num_labels else None,
  )
  log_t, rgb, weights, hits = jax.lax.fori_loop(
      0, num, body, init, unroll=unroll(MARCH_UNROLL, num)
  )
  return rgb, log_t, weights, hits


def march_bucket_vjp(
    bucket, tf_table, corners, settings, rgb_total, g_rgb, g_log_t, dtype
):
  """Cotangent of the TF table from one bucket (module docstring).

  Args:
    tf_table: [bins_y, bins_x, 4]; corners: its corner_table.
    rgb_total: [R, 3] the forward C.
    g_rgb, g_log_t: [R, 3], [R] cotangents of C and of log T_N.

  Returns:
    [bins_y * bins_x, 4] cotangent of the flattened table.
  """
  fields = _fields(bucket, False)
  num, rays = bucket.idx.shape
  bins_x = tf_table.shape[-2]
  one_minus_eps = 1.0 - jnp.finfo(dtype).epsneg
  ends = chord_ends(bucket, dtype)

  def body(i, carry):
    trans, behind, g_table = carry  # T_i and sum_{j>=i} T_j a_j c_j.
    t, rgba, col, log_trans = _step_samples(
        bucket, fields, corners, i, settings, dtype, ends
    )
    w = trans * -jnp.expm1(log_trans)  # T_i a_i.
    trans_next = trans - w  # T_{i+1} = T_i (1 - a_i).
    behind = behind - w[..., None] * col  # R_i.
    g_lt = g_log_t + jnp.sum(g_rgb * (behind - trans_next[..., None] * col), -1)
    g_col = g_rgb * w[..., None]
    if settings.shading:
      lit_factor = settings.ambient + settings.diffuse * t['diffuse']
      unclipped = (
          rgba[..., :3] * lit_factor[..., None]
          + (settings.specular * t['specular'])[..., None]
      ) < 1.0
      g_col = g_col * (lit_factor[..., None] * unclipped)
    alpha = rgba[..., 3]
    # lt = (l / l_ref) log(1 - min(alpha, 1 - eps)): compositing.safe_log1m.
    opaque = alpha >= one_minus_eps
    g_alpha = (
        -g_lt
        * (t['seg'] / settings.reference_step_mm)
        * ~opaque
        / (1.0 - jnp.where(opaque, 0.0, alpha))
    )
    g_rgba = jnp.concatenate([g_col, g_alpha[..., None]], axis=-1)
    # The lookup's 2x2 bins are flat rows idx, idx + 1, idx + bins_x and
    # idx + bins_x + 1 of the table (tf_coords keeps ix <= bins_x - 2). Four
    # scatters into the [bins, 4] table beat one into the 4x larger corner
    # table (cache misses).
    fx, fy = t['fx'][..., None], t['fy'][..., None]
    for offset, weight in (
        (0, (1 - fx) * (1 - fy)),
        (1, fx * (1 - fy)),
        (bins_x, (1 - fx) * fy),
        (bins_x + 1, fx * fy),
    ):
      g_table = g_table.at[t['idx'] + offset].add(
          weight * g_rgba, mode='promise_in_bounds'
      )
    return trans_next, behind, g_table

  init = (
      jnp.ones((rays,), dtype),
      rgb_total,
      jnp.zeros((tf_table.shape[-3] * bins_x, 4), dtype),
  )
  return jax.lax.fori_loop(0, num, body, init, unroll=unroll(VJP_UNROLL, num))[
      2
  ]


def render_buckets(cache, tf_table, settings, num_labels: int):
  """The cached rendering [H*W, 4], per-bucket (C, log T_N) and, when
  num_labels > 0, the per-label weights [H*W, G] and hits [H*W, G] (else
  None, None)."""
  corners = sampling.corner_table(tf_table)
  dtype = tf_table.dtype
  n_pix = cache.height * cache.width
  bg = jnp.concatenate(
      [jnp.asarray(settings.background, dtype), jnp.zeros((1,), dtype)]
  )
  image = jnp.broadcast_to(bg, (n_pix, 4))
  weights = hits = None
  if num_labels:
    weights = jnp.zeros((n_pix, num_labels), dtype)
    hits = jnp.zeros((n_pix, num_labels), bool)
  totals = []
  for b in cache.buckets:
    rgb, log_t, w, hit = march_bucket(b, corners, settings, num_labels, dtype)
    totals.append((rgb, log_t))
    rgba = compositing.over_background(
        rgb, -jnp.expm1(log_t), settings.background
    )
    image = image.at[b.pixels].set(rgba, mode='drop')
    if num_labels:
      weights = weights.at[b.pixels].set(w, mode='drop')
      hits = hits.at[b.pixels].set(hit, mode='drop')
  return image, totals, weights, hits


def zero_cotangent(x):
  if jnp.issubdtype(x.dtype, jnp.inexact):
    return jnp.zeros_like(x)
  return np.zeros(x.shape, jax.dtypes.float0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def cached_image(cache, tf_table, settings):
  """[H*W, 4] RGBA of a cached view; differentiable w.r.t. tf_table (the
  cache gets a zero cotangent: its samples do not depend on the TF)."""
  return render_buckets(cache, tf_table, settings, 0)[0]


def _cached_image_fwd(cache, tf_table, settings):
  image, totals, _, _ = render_buckets(cache, tf_table, settings, 0)
  return image, (cache, tf_table, totals)


def _cached_image_bwd(settings, residuals, ct):
  cache, tf_table, totals = residuals
  dtype = tf_table.dtype
  corners = sampling.corner_table(tf_table)
  bg = jnp.asarray(settings.background, dtype)
  g_table = 0
  for b, (rgb, log_t) in zip(cache.buckets, totals):
    ct_b = ct.at[b.pixels].get(mode='fill', fill_value=0)  # Padding rays: 0.
    # RGB out = C + T_N bg and alpha out = 1 - T_N, with T_N = exp(log T_N).
    g_log_t = (jnp.sum(ct_b[:, :3] * bg, axis=-1) - ct_b[:, 3]) * jnp.exp(log_t)
    g_table = g_table + march_bucket_vjp(
        b, tf_table, corners, settings, rgb, ct_b[:, :3], g_log_t, dtype
    )
  return (
      jax.tree_util.tree_map(zero_cotangent, cache),
      g_table.reshape(tf_table.shape),
  )


cached_image.defvjp(_cached_image_fwd, _cached_image_bwd)
