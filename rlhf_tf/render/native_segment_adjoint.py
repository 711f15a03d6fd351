"""The numba adjoint walker of the native pre-integrated cached march
(``rlhf_tf.render.cached_native_segments``: what and why; one segment in
``native_segment_plan``): per group of rays the forward's walk over the
segments it composited, R_i = C - sum_{j<=i} T_j e_j, into NUM_BLOCKS
partial tables. A block the TF leaves clear: its weights stored in the
cache (``native_clear_blocks``), no segment loaded. Other transparent
segments: ``native_clear_adjoint``; a segment is known transparent
without a split when its block's box (``native_block_boxes``) or its own
(stored, ``native_segment_boxes``; else ``surely_transparent``'s) is
clear, the forward's tests. A classified
segment's pieces' means (its table reads): the forward's records when it
kept them (under the gradient), else read once (``native_segment_kept``:
kept for ``segment_adjoint``); while it is split, the caches are asked
for the cotangent's rows at its midpoint's and back end's bins (and the
table's, unless recorded: ``native_trilinear.prefetch_row``, as the
direct march).
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render.native_block_boxes import BLOCK, block_clear
from rlhf_tf.render.native_borrow import borrowed
from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_clear_adjoint import (
    clear_adjoint,
    clear_unsplit,
    flush,
    NUM_PENDING,
    one_bin,
    unsplit,
)
from rlhf_tf.render.native_clear_blocks import scatter_block
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_pool_rows import columns, load_ends, load_shading
from rlhf_tf.render.native_segment_boxes import clear as seg_clear
from rlhf_tf.render.native_segment_kept import (
    kept_optics,
    key,
    recall,
    segment_adjoint,
    segment_forward_kept,
)
from rlhf_tf.render.native_segment_plan import (  # pylint: disable=g-importing-member
    _column,
    _row,
    NUM_PIECES,
    NUM_POINTS,
    occupancy,
    split,
    split_shading,
    surely_transparent,
)
from rlhf_tf.render.native_trilinear import prefetch_row


@numba.njit(**HELPER)
def _cotangents(m, g_rgb, g_log_t, behind, trans, g_e):
  """Ray m's dC/de_i = T_i g_rgb into g_e [3]; returns its g_lt =
  g_log_t + g_rgb . R_i (behind [n, 3]: R_i, trans [n]: T_i)."""
  g_lt = g_log_t[m]
  for c in range(3):
    g_lt += g_rgb[m, c] * behind[m, c]
    g_e[c] = g_rgb[m, c] * trans[m]
  return g_lt


@numba.njit(**HELPER)
def scratch(n):
  """The walk's scratch arrays for groups of up to n rays (``_adjoint_group``
  takes them from its caller, which holds them: borrowed views)."""
  return (
      np.zeros((3, 5)),  # ends
      np.zeros((NUM_POINTS, 4)),  # points
      np.zeros(NUM_PIECES),  # lengths
      np.zeros(2),  # taus
      np.zeros((NUM_PIECES + 1, 4)),  # e
      np.zeros(3),  # g_e
      np.zeros(3),  # g_piece
      np.zeros((NUM_PIECES, 6)),  # kept
      np.zeros(n),  # trans
      np.zeros((n, 3)),  # behind
      np.zeros((n, NUM_PENDING)),  # pending
      np.zeros(n, np.int64),  # bin_k
  )


# fastmath={'contract'}: a * b + c as one fused multiply-add (one rounding
# fewer; no reassociation, no approximate division or transcendental): the
# walk ~6 % faster on Cranium (benchmarks/render.py --new-views), the
# cotangent within rounding of the unfused one (tests: 1e-10 in float64).
@numba.njit(nogil=True, error_model='numpy', fastmath={'contract'})
def _adjoint_group(
    fields,
    box,
    seg_box,
    span,
    keys,
    weights,
    lo,
    hi,
    r0,
    steps,
    table,
    occ,
    bins_x,
    bins_y,
    params,
    rgb_total,
    g_rgb,
    g_log_t,
    acc,
    work,
    res,
    res_keys,
    at,
    end,
):
  """Adds the group's share of the (P, V) table's cotangent into acc
  [bins, 8], each ray over its steps[m] segments (cached_segments.
  march_tile_vjp: T_i, R_i = sum_{j>i} T_j e_j; dC/de_i = T_i, dC/dlt_i =
  R_i, d log T_N / dlt_i = 1). Transparent segments are walked too: they
  pass a cotangent to their extinction and emission (clear_adjoint, no
  table load; occ: ``occupancy``), gathered per ray while its cotangents
  stay the same; a segment's box from seg_box [rows, n] (``native_segment_
  boxes``, the forward's test; none: 0 rows, surely_transparent of its
  ends); a clear block from span [blocks, n, 2],
  keys, weights (``native_clear_blocks``; span [0, n, 2]: none). work:
  ``scratch``. A classified segment's means: records at .. end - 1 of res,
  res_keys (``native_segment_kept``; none: at = end), else the table's.
  Every array is used through a ``borrowed`` view (the caller holds
  them): no reference counting per segment."""
  u, v, du, um, vm, dum, d, s, dm, sm = fields  # Once (forward's note).
  u, v, du = borrowed(u), borrowed(v), borrowed(du)
  um, vm, dum = borrowed(um), borrowed(vm), borrowed(dum)
  d, s, dm, sm = borrowed(d), borrowed(s), borrowed(dm), borrowed(sm)
  lo, hi, steps = borrowed(lo), borrowed(hi), borrowed(steps)
  table, occ, acc = borrowed(table), borrowed(occ), borrowed(acc)
  g_rgb, g_log_t = borrowed(g_rgb), borrowed(g_log_t)
  n = lo.shape[0]
  zero = lo.dtype.type(0.0)
  step, shading, ka, kd, ks, min_den = params
  shaded = shading > 0
  optics = (shaded, ka, kd, ks)
  f = table.dtype.type
  ends, points, lengths, taus, e, g_e, g_piece = work[:7]
  kept, trans, behind, pending, bin_k = work[7:]
  ends, points, lengths = borrowed(ends), borrowed(points), borrowed(lengths)
  taus, e, g_e, g_piece = (
      borrowed(taus),
      borrowed(e),
      borrowed(g_e),
      borrowed(g_piece),
  )
  kept = borrowed(kept)
  trans, behind = borrowed(trans), borrowed(behind)
  pending, bin_k = borrowed(pending), borrowed(bin_k)
  box, span, seg_box = borrowed(box), borrowed(span), borrowed(seg_box)
  keys, weights = borrowed(keys), borrowed(weights)
  res, res_keys = borrowed(res), borrowed(res_keys)
  boxed = box.shape[0] > 0
  seg_boxed = seg_box.shape[0] > 0
  weighed = span.shape[0] > 0
  k0 = r0 // BLOCK
  for m in range(n):
    trans[m] = 1.0
    bin_k[m] = -1
    for c in range(3):
      behind[m, c] = rgb_total[m, c]
  most = 0
  for m in range(n):
    most = max(most, steps[m])
  # Block by block of BLOCK segments, ray by ray within one (its rows are
  # a few cache lines; a ray's branches repeat).
  for i0 in range(0, most, BLOCK):
    for m in range(n):
      if i0 >= steps[m]:
        continue
      clear = boxed and block_clear(occ, box, k0 + i0 // BLOCK, m)
      # The ray's cotangents before its next segment: dC/de_i = T_i,
      # dC/dlt_i = R_i (unchanged by transparent segments: e = 0).
      g_lt = _cotangents(m, g_rgb, g_log_t, behind, trans, g_e)
      # A clear block: its few stored weights (native_clear_blocks)
      # rather than its BLOCK segments. Also the block the ray ends in:
      # the forward stops in a clear block only past the ray's end (or
      # num), where every segment has length 0 and no weight.
      b = k0 + i0 // BLOCK
      stored = clear and weighed
      if stored and scatter_block(
          acc, span, keys, weights, b, m, optics, g_e, g_lt
      ):
        continue
      # Its pending sums (native_clear_adjoint) in registers meanwhile.
      pend = (bin_k[m],) + (
          pending[m, 0],
          pending[m, 1],
          pending[m, 2],
          pending[m, 3],
          pending[m, 4],
          pending[m, 5],
      )
      for i in range(i0, min(i0 + BLOCK, steps[m])):
        fi = lo.dtype.type(i) * step
        row = r0 + i
        seg = min(max(hi[m] - fi, zero), step) - min(
            max(lo[m] - fi, zero), step
        )
        half = 0.5 * seg
        load_ends(u, v, du, um, vm, dum, row, m, f, ends)
        if shaded:
          load_shading(d, s, dm, sm, row, m, ends)
        # Transparent for sure (its block's box or its own is clear: the
        # forward's tests; its box stored: no float-to-int clamp chain per
        # segment): no split where split would leave it whole.
        if seg_boxed:
          see_through = clear or seg_clear(occ, seg_box, row, m)
        else:
          see_through = clear or surely_transparent(
              occ, bins_x, bins_y, ends, half
          )
        if see_through:
          if unsplit(ends, half) or (
              not shaded and one_bin(ends, half, bins_x, bins_y)
          ):
            pend = clear_unsplit(
                acc,
                bins_x,
                bins_y,
                ends,
                half,
                optics,
                g_e,
                g_lt,
                pend,
            )
            continue
          split(ends, half, bins_x, min_den, points, lengths, taus)
          if shaded:
            split_shading(ends, taus, points)
          pend = clear_adjoint(
              acc,
              bins_x,
              bins_y,
              points,
              lengths,
              optics,
              g_e,
              g_lt,
              pend,
          )
          continue
        # The (P, V) table rows its midpoint's and back end's lookups will
        # likely read (unless recorded), and the cotangent's rows its
        # pieces add into, asked of the caches while it is split (both 2
        # MB: larger than L2).
        recorded = recall(res, res_keys, at, end, key(i, m), kept)
        for k in range(1, 3):
          bin_e = _row(ends[k, 1], bins_y) * bins_x + _column(
              ends[k, 0], bins_x
          )
          if not recorded:
            prefetch_row(table, bin_e)
            prefetch_row(table, bin_e + bins_x)
          prefetch_row(acc, bin_e)
          prefetch_row(acc, bin_e + bins_x)
        split(ends, half, bins_x, min_den, points, lengths, taus)
        if shaded:
          split_shading(ends, taus, points)
        # Classified as the forward does (no exact transparent() test: a
        # transparent segment among these, ~1 %, has pieces of mean
        # extinction 0, whose adjoint is the same as clear_adjoint's).
        # T_i, R_i change here: the pending sums take the old ones.
        pend = flush(acc, bins_x, optics, g_e, g_lt, pend)
        if recorded:
          at += 1
          kept_optics(points, lengths, optics, e, kept)
        else:
          at = end  # The rest of the group's segments: the table's.
          segment_forward_kept(
              table, bins_x, bins_y, points, lengths, optics, e, kept
          )
        t_i = trans[m]
        g_lt = g_log_t[m]
        for c in range(3):
          behind[m, c] -= t_i * e[NUM_PIECES, c]  # R_i.
          g_lt += g_rgb[m, c] * behind[m, c]
          g_e[c] = g_rgb[m, c] * t_i
        segment_adjoint(
            bins_x,
            bins_y,
            points,
            lengths,
            optics,
            e,
            kept,
            g_e,
            g_lt,
            acc,
            g_piece,
        )
        trans[m] = t_i * (1.0 - e[NUM_PIECES, 3])
        g_lt = _cotangents(m, g_rgb, g_log_t, behind, trans, g_e)
      bin_k[m], pending[m, 0], pending[m, 1], pending[m, 2] = pend[:4]
      pending[m, 3], pending[m, 4], pending[m, 5] = pend[4:]
  for m in range(n):
    g_lt = _cotangents(m, g_rgb, g_log_t, behind, trans, g_e)
    pend = (bin_k[m],) + (
        pending[m, 0],
        pending[m, 1],
        pending[m, 2],
        pending[m, 3],
        pending[m, 4],
        pending[m, 5],
    )
    flush(acc, bins_x, optics, g_e, g_lt, pend)


@kernel(
    parallel=True,
    nogil=True,
    error_model='numpy',
    fastmath={'contract'},
)
def adjoint_kernel(
    fields,
    start,
    length,
    first_row,
    steps,
    box,
    seg_box,
    span,
    keys,
    weights,
    table,
    bins_x,
    bins_y,
    params,
    rgb_total,
    g_rgb,
    g_log_t,
    kept,
    group,
    g_out,
):
  """Adds the cotangent of the (P, V) table into g_out [NUM_BLOCKS, bins,
  8] (block b: groups b, b + NUM_BLOCKS, ...; summed in a fixed order).
  seg_box: the segments' boxes [rows, tile] (or [0, tile]: none). kept:
  the forward's records (res, keys, span: ``native_segment_kept``;
  span [0, 2]: none)."""
  res, res_keys, span_kept = kept
  n_tiles, tile = start.shape
  groups = -(-tile // group)
  jobs = n_tiles * groups
  blocks = g_out.shape[0]
  occ = occupancy(table, bins_x)
  for b in numba.prange(blocks):
    g_out[b] = 0.0  # Each block by its thread (16 MB in all).
    work = scratch(group)
    for job in range(b, jobs, blocks):
      t = job // groups
      g0 = (job % groups) * group
      g1 = min(g0 + group, tile)
      lo = start[t, g0:g1]
      at = end = 0
      if span_kept.shape[0] > 0:
        at = span_kept[job, 0]
        end = at + span_kept[job, 1]
      _adjoint_group(
          columns(fields, g0, g1),
          box[:, g0:g1],
          seg_box[:, g0:g1],
          span[:, g0:g1],
          keys,
          weights,
          lo,
          lo + length[t, g0:g1],
          first_row[t],
          steps[t, g0:g1],
          table,
          occ,
          bins_x,
          bins_y,
          params,
          rgb_total[t, g0:g1],
          g_rgb[t, g0:g1],
          g_log_t[t, g0:g1],
          g_out[b],
          work,
          res,
          res_keys,
          at,
          end,
      )
