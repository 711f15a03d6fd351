"""Pre-integrated rendering from a ray cache: forward march and adjoint.

The pre-integrated twin of ``rlhf_tf.render.cached_march`` (same layout,
same front-to-back walk over a tile's [rows, tile] fields, same re-walking
adjoint). A tile of a cache built with ``settings.preintegrate`` stores
per ray the S + 1 segment ends (``preintegration.coords`` u, v and, with
shading, the headlight terms); segment i runs from row i (front) to row
i + 1 (back). The march carries the front row, so each step reads one row.

Forward, per segment (``rlhf_tf.render.preintegration``):

  Vbar_i = (G(u_b, vbar) - G(u_f, vbar)) / (u_b - u_f)  (mean of the end
           values V where |u_b - u_f| < TINY_DU), vbar = (v_f + v_b) / 2,
           G = P + fu V bilinear in the two gradient rows of vbar
  tau_i  = l_i sigmabar_i,  a_i = 1 - exp(-tau_i),  lt_i = -tau_i
  e_i    = l_i (sigma rgb)bar_i phi(tau_i)                 (premultiplied)
  e'_i   = min(e_i (ka + kd dbar) + ks sbar a_i, a_i)      (shading on)
  C      = sum_i T_i e'_i,  T_i = exp(sum_{j<i} lt_j)

Reverse (custom VJP w.r.t. the (P, V) table; JAX differentiates the table's
construction from the TF, a cumsum and a log): with R_i = sum_{j>i} T_j e'_j,

  dC/de'_i = T_i,   dC/dlt_i = R_i,   d log T_N / dlt_i = 1,

then through the clip, phi (``absorption_ratio_grad``), the difference
quotient and the row interpolation, scatter-added into the 2 rows x 2 ends
of the [bins_y * bins_x, 8] table cotangent. Exact: tested against finite
differences in float64 and against autodiff of the direct renderer
(tests/test_preintegration.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlhf_tf.render import cached_march, preintegration, sampling


def _fields(tiles, labels: bool):
  names = ('u', 'v', 'diffuse', 'specular') + (('label',) if labels else ())
  return {k: getattr(tiles, k) for k in names if getattr(tiles, k) is not None}


def _row(fields, i, dtype):
  """Pool row i (a segment end) of every ray: u, v, shading terms, label."""
  t = {
      k: jax.lax.dynamic_index_in_dim(v, i, 0, keepdims=False)
      for k, v in fields.items()
  }
  t['u'], t['v'] = t['u'].astype(dtype), t['v'].astype(dtype)
  for k in ('diffuse', 'specular'):
    if k in t:
      t[k] = cached_march.dequantise(t[k], dtype)
  return t


def _segment(front, back, i, ends, pairs, bins, settings):
  """Segment i: (lookups, mean [R, 4], l_i [R], e [R, 3], lt [R], shaded
  e' [R, 3]); lookups = ((idx, fu, G, V) front, back) and fv."""
  by, bx = bins
  fi = i.astype(ends[0].dtype)
  seg = sampling.segment_length(
      ends[1], fi, settings.step_mm
  ) - sampling.segment_length(ends[0], fi, settings.step_mm)
  v_mean = 0.5 * (front['v'] + back['v'])
  looks = []
  for end in (front, back):
    idx, fu, fv = preintegration.lookup_index(end['u'], v_mean, bx, by)
    looks.append((idx, fu) + preintegration.prefix_lookup(pairs, idx, fu, fv))
  (_, _, g_f, v_f), (_, _, g_b, v_b) = looks
  mean = preintegration.segment_mean(g_f, v_f, g_b, v_b, back['u'] - front['u'])
  e, lt = preintegration.segment_optics(mean, seg)
  lit = e
  if settings.shading:
    lit = preintegration.shade_premultiplied(
        e,
        lt,
        0.5 * (front['diffuse'] + back['diffuse']),
        0.5 * (front['specular'] + back['specular']),
        settings,
    )
  return looks, fv, mean, seg, e, lt, lit


def march_tile(tiles, t, pairs, bins, settings, num_labels: int, dtype):
  """Forward pass over tile t (cached_march.march_tile's outputs).

  Segment i runs from row i to row i + 1 of the tile; its last chunk holds
  at least one end past the tile's longest chord, so the walk stops one
  row short of the next tile's rows only through zero-length segments
  (transparent, whatever they read). A segment's label
  (render_cached_labels) is its back end's."""
  fields = _fields(tiles, bool(num_labels))
  rays = tiles.pixels.shape[1]
  ends = cached_march.chord_ends(tiles, t, dtype)

  def body(row, i, carry):
    front, log_t, rgb, weights, hits = carry
    back = _row(fields, row + 1, dtype)
    *_, seg, _, lt, lit = _segment(front, back, i, ends, pairs, bins, settings)
    trans = jnp.exp(log_t)
    rgb = rgb + trans[..., None] * lit
    if num_labels:
      w = trans * -jnp.expm1(lt)  # T_i a_i.
      onehot = jax.nn.one_hot(back['label'], num_labels, dtype=dtype)
      weights = weights + w[..., None] * onehot
      hits = hits | ((onehot > 0) & (seg > 0)[..., None])
    return back, log_t + lt, rgb, weights, hits

  init = (
      _row(fields, tiles.first_chunk[t] * cached_march.CHUNK, dtype),
      jnp.zeros((rays,), dtype),
      jnp.zeros((rays, 3), dtype),
      jnp.zeros((rays, num_labels), dtype) if num_labels else None,
      jnp.zeros((rays, num_labels), bool) if num_labels else None,
  )
  _, log_t, rgb, weights, hits = cached_march.walk_tile(
      tiles, t, body, init, cached_march.MARCH_UNROLL
  )
  return rgb, log_t, weights, hits


def march_tile_vjp(
    tiles, t, pairs, bins, settings, rgb_total, g_rgb, g_log_t, g_table
):
  """Adds tile t's share of the cotangent of the (P, V) table to g_table
  [bins_y * bins_x, 8].

  Args:
    pairs: preintegration.row_pairs of the table; bins: (bins_y, bins_x).
    rgb_total: [tile, 3] the forward C.
    g_rgb, g_log_t: [tile, 3], [tile] cotangents of C and of log T_N.
  """
  dtype = g_table.dtype
  fields = _fields(tiles, False)
  by, bx = bins
  del by
  ends = cached_march.chord_ends(tiles, t, dtype)

  def body(row, i, carry):
    front, trans, behind, g_table = carry  # T_i, sum_{j>=i} T_j e'_j.
    back = _row(fields, row + 1, dtype)
    looks, fv, mean, seg, e, lt, lit = _segment(
        front, back, i, ends, pairs, bins, settings
    )
    behind = behind - trans[..., None] * lit  # R_i.
    g_lit = g_rgb * trans[..., None]
    g_lt = g_log_t + jnp.sum(g_rgb * behind, -1)
    tau = -lt
    if settings.shading:
      a = -jnp.expm1(lt)
      lit_factor = settings.ambient + settings.diffuse * 0.5 * (
          front['diffuse'] + back['diffuse']
      )
      spec = settings.specular * 0.5 * (front['specular'] + back['specular'])
      unclipped = (e * lit_factor[..., None] + (spec * a)[..., None]) < a[
          ..., None
      ]
      g_e = g_lit * lit_factor[..., None] * unclipped
      g_a = jnp.sum(g_lit * jnp.where(unclipped, spec[..., None], 1.0), -1)
      g_tau = g_a * jnp.exp(lt)
    else:
      g_e = g_lit
      g_tau = 0.0
    phi = preintegration.absorption_ratio(tau)
    g_tau = (
        g_tau
        - g_lt
        + jnp.sum(g_e * mean[..., 1:], -1)
        * seg
        * preintegration.absorption_ratio_grad(tau)
    )
    g_mean = jnp.concatenate(
        [(g_tau * seg)[..., None], g_e * (seg * phi)[..., None]], -1
    )
    # mean = (G_b - G_f) / du (|du| >= TINY_DU), else (V_f + V_b) / 2;
    # G = P + fu V; (P, V) = row j + fv (row j + 1 - row j).
    du = back['u'] - front['u']
    quotient = jnp.abs(du) > preintegration.TINY_DU
    g_g = jnp.where(
        quotient[..., None],
        g_mean / jnp.where(quotient, du, 1.0)[..., None],
        0.0,
    )
    half = jnp.where(quotient[..., None], 0.0, 0.5 * g_mean)
    for (idx, fu, _, _), sign in zip(looks, (-1.0, 1.0)):
      g_p = sign * g_g
      g_pv = jnp.concatenate([g_p, fu[..., None] * g_p + half], -1)
      for offset, weight in ((0, 1.0 - fv), (bx, fv)):
        g_table = g_table.at[idx + offset].add(
            weight[..., None] * g_pv, mode='promise_in_bounds'
        )
    return back, trans * jnp.exp(lt), behind, g_table

  init = (
      _row(fields, tiles.first_chunk[t] * cached_march.CHUNK, dtype),
      jnp.ones(rgb_total.shape[:1], dtype),
      rgb_total,
      g_table,
  )
  return cached_march.walk_tile(tiles, t, body, init, cached_march.VJP_UNROLL)[
      3
  ]


def render_tiles(cache, tf_table, settings, num_labels: int):
  """cached_march.render_tiles for a pre-integrated cache."""
  table = preintegration.segment_table(tf_table, settings.reference_step_mm)
  return _render_table(cache, table, settings, num_labels)


def _render_table(cache, table, settings, num_labels: int):
  pairs = preintegration.row_pairs(table)
  bins = tuple(int(b) for b in table.shape[:2])
  dtype = table.dtype
  tiles = cache.tiles
  rgb, log_t, w, hit = cached_march.map_tiles(
      tiles,
      lambda t: march_tile(tiles, t, pairs, bins, settings, num_labels, dtype),
  )
  image, weights, hits = cached_march.scatter_image(
      cache, rgb, log_t, w, hit, settings, num_labels
  )
  return image, (rgb, log_t), weights, hits


def cached_image(cache, tf_table, settings):
  """[H*W, 4] RGBA of a pre-integrated cached view, differentiable w.r.t.
  tf_table (through the (P, V) table's construction and table_image's
  custom VJP)."""
  table = preintegration.segment_table(tf_table, settings.reference_step_mm)
  return table_image(cache, table, settings)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def table_image(cache, table, settings):
  """[H*W, 4] RGBA of a cached view from a (P, V) table [by, bx, 8]."""
  return _render_table(cache, table, settings, 0)[0]


def _table_image_fwd(cache, table, settings):
  image, totals, _, _ = _render_table(cache, table, settings, 0)
  return image, (cache, table, totals)


def _table_image_bwd(settings, residuals, ct):
  cache, table, (rgb, log_t) = residuals
  pairs = preintegration.row_pairs(table)
  bins = tuple(int(b) for b in table.shape[:2])
  tiles = cache.tiles
  g_rgb, g_log_t = cached_march.tiles_cotangent(
      tiles, ct, log_t, settings.background
  )

  def add_tile(t, g_table):
    return march_tile_vjp(
        tiles, t, pairs, bins, settings, rgb[t], g_rgb[t], g_log_t[t], g_table
    )

  g_table = jax.lax.fori_loop(
      0,
      tiles.pixels.shape[0],
      add_tile,
      jnp.zeros((bins[0] * bins[1], 8), table.dtype),
  )
  return (
      jax.tree_util.tree_map(cached_march.zero_cotangent, cache),
      g_table.reshape(table.shape),
  )


table_image.defvjp(_table_image_fwd, _table_image_bwd)
