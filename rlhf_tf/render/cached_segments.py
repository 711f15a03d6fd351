"""Pre-integrated rendering from a ray cache: forward march and adjoint.

The pre-integrated twin of ``rlhf_tf.render.cached_march`` (same layout,
same front-to-back walk over a tile's [rows, tile] fields, same re-walking
adjoint). A tile of a cache built with ``settings.preintegrate`` stores
per ray the S + 1 segment ends (``preintegration.coords`` u, v, the slope
du / dt and, with shading, the headlight terms) and, in the same row, those
of the midpoint of the segment that starts there; segment i runs from row i
(front, and its midpoint) to row i + 1 (back). The march carries the front
row, so each step reads one row.

Forward, per segment (``rlhf_tf.render.preintegration.segment_plan``; each
segment in two halves, front -> sampled midpoint -> back, each half split
in two at the point ``preintegration.split_at_extremum`` gives from its
ends' u and du (a bracketed crest; else not: an empty piece), four pieces
composited), per piece from end f to end b:

  Vbar_i = (G(u_b, vbar) - G(u_f, vbar)) / (u_b - u_f)  (mean of the end
           values V where |u_b - u_f| < TINY_DU), vbar = (v_f + v_b) / 2,
           G = P + fu V bilinear in the two gradient rows of vbar
  tau_i  = l_i sigmabar_i,  a_i = 1 - exp(-tau_i),  lt_i = -tau_i
  e_i    = l_i (sigma rgb)bar_i phi(tau_i)                 (premultiplied)
  e'_i   = min(e_i (ka + kd d_i) + ks s_i a_i, a_i)        (shading on)
           d_i, s_i: the ends' headlight terms interpolated at the
           piece's extinction centroid (preintegration.shading_weight)
  C      = sum_i T_i e'_i,  T_i = exp(sum_{j<i} lt_j)

Reverse (custom VJP w.r.t. the (P, V) table; JAX differentiates the table's
construction from the TF, a cumsum and a log): re-walking front to back
with T_i and R_i = sum_{j>i} T_j e'_j,

  dC/de'_i = T_i,   dC/dlt_i = R_i,   d log T_N / dlt_i = 1,

then the VJP of the segment's elementwise optics
(``preintegration.segment_plan``, by JAX, on [4, R] arrays, the pieces)
gives the cotangents of the eight gathered row pairs, scatter-added into the
[bins_y * bins_x, 8] table cotangent. Memory: [R] carries and one table.
Exact: tested against finite differences in float64 and against autodiff of
the direct renderer (tests/test_preintegration.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlhf_tf.render import cached_march, preintegration, sampling

# Segment steps per loop iteration of the forward march: its step (eight
# gathers, four pre-integrated pieces) is much heavier than the point
# march's, and unrolling it 8 times (cached_march.MARCH_UNROLL) made the
# compile 6x longer and the march 25 % slower (64^2 test view, 2 cores).
MARCH_UNROLL = 1


_ENDS = ('', '_mid')


def _fields(tiles, labels: bool):
  names = tuple(
      k + sfx for sfx in _ENDS for k in ('u', 'v', 'du', 'diffuse', 'specular')
  ) + (('label',) if labels else ())
  return {k: getattr(tiles, k) for k in names if getattr(tiles, k) is not None}


def _row(fields, i, dtype):
  """Pool row i (a segment end and the next midpoint) of every ray: u, v,
  shading terms, label."""
  t = {
      k: jax.lax.dynamic_index_in_dim(v, i, 0, keepdims=False)
      for k, v in fields.items()
  }
  for sfx in _ENDS:
    for k in ('u', 'v', 'du'):
      t[k + sfx] = t[k + sfx].astype(dtype)
    for k in ('diffuse', 'specular'):
      if k + sfx in t:
        t[k + sfx] = cached_march.dequantise(t[k + sfx], dtype)
  return t


def _point(row, suffix, shading: bool):
  """The end (suffix '') or midpoint ('_mid') of a row as
  preintegration.segment_plan takes it."""
  names = ('u', 'v', 'du') + (('diffuse', 'specular') if shading else ())
  return {k: row[k + suffix] for k in names}


def _segment(front, back, i, ends, bins, settings):
  """Segment i: (l_i [R], the row-pair indices [4, R] to gather for its
  four pieces' front and back ends, and segment(rows_f, rows_b) ->
  (e' [R, 3], lt [R]) of the rows gathered there;
  preintegration.segment_plan through the front row's midpoint)."""
  by, bx = bins
  fi = i.astype(ends[0].dtype)
  seg = sampling.segment_length(
      ends[1], fi, settings.step_mm
  ) - sampling.segment_length(ends[0], fi, settings.step_mm)
  idxs, segment = preintegration.segment_plan(
      _point(front, '', settings.shading),
      _point(front, '_mid', settings.shading),
      _point(back, '', settings.shading),
      seg,
      settings,
      bx,
      by,
  )
  return seg, idxs, segment


def _gather(pairs, idx):
  return pairs.at[idx].get(mode='promise_in_bounds')  # [4, R, 2, 8]


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
    seg, idxs, segment = _segment(front, back, i, ends, bins, settings)
    lit, lt = segment(*[_gather(pairs, idx) for idx in idxs])
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
      tiles, t, body, init, MARCH_UNROLL
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
    _, idxs, segment = _segment(front, back, i, ends, bins, settings)
    (lit, lt), pullback = jax.vjp(
        segment, *[_gather(pairs, idx) for idx in idxs]
    )
    behind = behind - trans[..., None] * lit  # R_i.
    # dC/de'_i = T_i; dC/dlt_i = R_i and d log T_N / dlt_i = 1.
    g_rows = pullback(
        (g_rgb * trans[..., None], g_log_t + jnp.sum(g_rgb * behind, -1))
    )
    # Row pair k of index idx [4, R] is table row idx + k bins_x.
    for idx, g in zip(idxs, g_rows):
      for k in range(2):
        g_table = g_table.at[idx + k * bx].add(
            g[..., k, :], mode='promise_in_bounds'
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
