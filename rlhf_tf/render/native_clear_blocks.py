"""Per block of a pre-integrated cache's rays, the TF-independent weights of
its cotangent to the (P, V) table when every segment in it is transparent.

The adjoint of the native pre-integrated march (``native_segment_adjoint``)
walks every segment the forward composited, the transparent ones too: a
transparent piece's cotangent to the table is linear in the ray's
cotangents A, B, C, fixed while it crosses transparent segments, times
weights of the piece's geometry alone (``native_clear_adjoint``'s
docstring): in one column, (1 - fv) l and fv l (and l s, l d shaded) at the
V columns of its bin and the bin one gradient row up; across columns,
``_scatter``'s P and V weights at both ends. A block of BLOCK segments
whose box (``native_block_boxes``) the TF leaves clear is all transparent,
so its cotangent is

  acc[bin, 4 g + c] += g_mean_c(w_l, w_s, w_d),   (native_clear_adjoint.
                                                   _g_mean)

summed over the few (bin, group g: 0 = P, 1 = V) keys its pieces reach,
with weights w = sum over its pieces of (weight l, weight l s, weight l d).
Those sums do not depend on the TF: they are computed once, when the cache
is built (``clear_weights``), for every block, and the adjoint scatters a
clear block's few keys instead of loading and classifying its BLOCK
segments (on Cranium 256^2 most of the walk: the air in front of the
head).

Stored per ray and block with fixed shapes (a view changes none: no new
compilation), in the pool's dtype:

  span [N // BLOCK, tile, 2] int32: the block's first entry and count, or
      count WALK: the adjoint walks it (its box larger than BOX_AREA
      bins, more than MAX_KEYS keys, or its tile's share of the entries,
      MEAN_KEYS per block, used up);
  keys [E] int32: 2 bin + g;  weights [E, 3]: (w_l, w_s, w_d), unshaded
      [E, 1]: w_l;  E = N // BLOCK * tile * MEAN_KEYS.

The weights are those of the adjoint's own walk (the same splits, the same
pieces; unshaded ``one_bin`` segments split as shaded ones: the same sums
up to rounding), summed in another order: the cotangent equals the walk's
up to rounding (tests/test_native_clear_blocks.py). The block a ray ends
in takes them too: its segments past the ray's end have length 0 and no
weight, and the forward stops in a clear block only there.
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render import native_lock
from rlhf_tf.render.cached_march import CHUNK
from rlhf_tf.render.native_args import read_only
from rlhf_tf.render.native_block_boxes import BLOCK
from rlhf_tf.render.native_borrow import borrowed
from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_clear_adjoint import _g_mean, unsplit
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_pool_rows import load_ends, load_shading
from rlhf_tf.render.native_segment_math import TINY_DU
from rlhf_tf.render.native_segment_plan import (  # pylint: disable=g-importing-member
    D,
    NUM_PIECES,
    NUM_POINTS,
    S,
    split,
    split_shading,
    U,
    V,
)

# Entries per block on average (a tile's share; Cranium 256^2: 2-3 keys
# in air, dozens in tissue), and at most per block (more: walked). Cranium
# 256^2 az 30 (one thread, CPU): MEAN_KEYS 4 / 6 / 8 -> adjoint x 0.77 /
# 0.73 / 0.74 (noise), 37 / 54 / 70 MB shaded; MAX_KEYS 16 / 24 / 32 / 64
# -> adjoint x 0.77 / 0.75 / 0.75 / 0.74, build 0.22 / 0.24 / 0.27 /
# 0.33 s.
MEAN_KEYS = 6
MAX_KEYS = 24
# Blocks whose box (native_block_boxes: columns x gradient rows, margins
# included; air ~12-16) is larger are walked without computing their
# weights: their keys are many, the TF rarely clears them. Cranium 256^2
# az 30, unshaded (one thread): BOX_AREA 36 / 100 / none -> build 0.15 /
# 0.17 / 0.23 s, adjoint x 0.73 / 0.72 / 0.71.
BOX_AREA = 36
HASH = 128  # A power of 2 > 4 MAX_KEYS: short probes.
WALK = -1


@numba.njit(**HELPER)
def _add(acc, n, key, c, l, s, d):
  """Adds c (l, l s, l d) to key's entry of acc = (keys [MAX_KEYS], w
  [MAX_KEYS, 3], slot [HASH]: each key's entry + 1 at its hash, 0 empty,
  placed [MAX_KEYS]: each entry's place in slot) with n entries (a new
  key takes entry n); returns n, MAX_KEYS + 1 when full. A hash rather
  than a scan of the entries: blocks in tissue reach dozens of keys (the
  scan cost ~2x the build's walk)."""
  if n > MAX_KEYS or c == 0.0:
    return n  # (A 0 weight adds exactly 0: no entry.)
  keys, w, slot, placed = acc
  h = (key * 40503) & (HASH - 1)
  while slot[h] != 0 and keys[slot[h] - 1] != key:
    h = (h + 1) & (HASH - 1)
  q = slot[h] - 1
  x = c * l
  if q >= 0:
    w[q, 0] += x
    w[q, 1] += x * s
    w[q, 2] += x * d
    return n
  if n == MAX_KEYS:
    return MAX_KEYS + 1
  slot[h] = n + 1
  placed[n] = h
  keys[n] = key
  w[n, 0] = x
  w[n, 1] = x * s
  w[n, 2] = x * d
  return n + 1


@numba.njit(**HELPER)
def _clear(acc, n):
  """Empties acc's hash of its n entries' keys (n <= MAX_KEYS + 1)."""
  slot, placed = acc[2], acc[3]
  for q in range(min(n, MAX_KEYS)):
    slot[placed[q]] = 0


@numba.njit(**HELPER)
def _piece(acc, n, bins_x, bins_y, u_f, v_f, u_b, v_b, l, s, d):
  """The weights of one transparent piece (native_clear_adjoint.
  _clear_piece and _scatter's, per unit of g_mean) added to acc
  (``_add``)."""
  i_f = min(max(int(u_f), 0), bins_x - 1)
  i_b = min(max(int(u_b), 0), bins_x - 1)
  vbar = 0.5 * (v_f + v_b)
  j = min(max(int(vbar), 0), bins_y - 2)
  fv = vbar - j
  w00 = 1.0 - fv
  k_f, k_b = j * bins_x + i_f, j * bins_x + i_b
  if i_f == i_b:
    n = _add(acc, n, 2 * k_f + 1, w00, l, s, d)
    return _add(acc, n, 2 * (k_f + bins_x) + 1, fv, l, s, d)
  du = u_b - u_f
  if abs(du) > TINY_DU:
    fu_f, fu_b = u_f - i_f, u_b - i_b
    for k, sign, fu in ((k_f, -1.0, fu_f), (k_b, 1.0, fu_b)):
      for row, wr in ((k, w00), (k + bins_x, fv)):
        n = _add(acc, n, 2 * row, sign * wr / du, l, s, d)
        n = _add(acc, n, 2 * row + 1, sign * wr * fu / du, l, s, d)
    return n
  for k in (k_f, k_b):
    n = _add(acc, n, 2 * k + 1, 0.5 * w00, l, s, d)
    n = _add(acc, n, 2 * (k + bins_x) + 1, 0.5 * fv, l, s, d)
  return n


@numba.njit(**HELPER)
def _segment(acc, n, ends, half, bins_x, bins_y, min_den, shaded, work):
  """The weights of one transparent segment (ends [3, 5], halves of length
  half > 0), split as native_segment_adjoint's clear path splits it."""
  points, lengths, taus = work
  if unsplit(ends, half):  # As native_clear_adjoint.clear_unsplit.
    for k in range(1, -1, -1):
      u_a, v_a = ends[k, 0], ends[k, 1]
      u_c = min(max(ends[k + 1, 0], 0.0), float(bins_x))
      v_c = v_a + (ends[k + 1, 1] - v_a)
      s = d = 0.0
      if shaded:
        d_a, s_a = ends[k, 3], ends[k, 4]
        s = s_a + 0.5 * ((s_a + (ends[k + 1, 4] - s_a)) - s_a)
        d = d_a + 0.5 * ((d_a + (ends[k + 1, 3] - d_a)) - d_a)
      n = _piece(acc, n, bins_x, bins_y, u_a, v_a, u_c, v_c, half, s, d)
    return n
  split(ends, half, bins_x, min_den, points, lengths, taus)
  if shaded:
    split_shading(ends, taus, points)
  for k in range(NUM_PIECES - 1, -1, -1):  # As clear_adjoint.
    l = lengths[k]
    if l == 0.0:
      continue
    s = d = 0.0
    if shaded:
      s = points[k, S] + 0.5 * (points[k + 1, S] - points[k, S])
      d = points[k, D] + 0.5 * (points[k + 1, D] - points[k, D])
    n = _piece(
        acc,
        n,
        bins_x,
        bins_y,
        points[k, U],
        points[k, V],
        points[k + 1, U],
        points[k + 1, V],
        l,
        s,
        d,
    )
  return n


@numba.njit(nogil=True, error_model='numpy', fastmath={'contract'})
def _tile_weights(fields, shade, box, lo, hi, r0, num, step, min_den, bins_x,
                  bins_y, mean, scratch, span, keys, weights):  # fmt: skip
  """Fills span, keys, weights of one tile: its rays lo, hi [tile], its
  segments i < num at pool rows r0 + i. scratch: acc (``_add``), ends,
  work (``_segment``). (A function of its own: inlined into the prange
  loop, the hash's lookups went wrong.)"""
  # Borrowed views (native_borrow; the caller holds the arrays): no
  # reference count per inlined helper call (5x the time with them).
  u, v, du, um, vm, dum = fields
  u, v, du = borrowed(u), borrowed(v), borrowed(du)
  um, vm, dum = borrowed(um), borrowed(vm), borrowed(dum)
  d, s, dm, sm = shade
  d, s, dm, sm = borrowed(d), borrowed(s), borrowed(dm), borrowed(sm)
  lo, hi, box = borrowed(lo), borrowed(hi), borrowed(box)
  span, keys, weights = borrowed(span), borrowed(keys), borrowed(weights)
  shaded = d.shape[0] > 0
  f = u.dtype.type
  zero = f(0.0)
  tile = lo.shape[0]
  acc, ends, work = scratch
  kk, ww = borrowed(acc[0]), borrowed(acc[1])
  acc = (kk, ww, borrowed(acc[2]), borrowed(acc[3]))
  ends = borrowed(ends)
  work = (borrowed(work[0]), borrowed(work[1]), borrowed(work[2]))
  # The tile's share of the entries: mean per block it has (its rows are
  # its own: shares never overlap), filled in the adjoint's order (block
  # by block, ray by ray); blocks past it are walked.
  at = r0 // BLOCK * tile * mean
  end = at + -(-num // BLOCK) * tile * mean
  for i0 in range(0, num, BLOCK):
    b = (r0 + i0) // BLOCK
    for m in range(tile):
      cols = np.int64(box[b, m, 1]) - np.int64(box[b, m, 0])
      if cols * (np.int64(box[b, m, 3]) - np.int64(box[b, m, 2])) > BOX_AREA:
        span[b, m, 0], span[b, m, 1] = at, WALK
        continue
      n = 0
      for i in range(i0, min(i0 + BLOCK, num)):
        fi = f(i) * step
        seg = min(max(hi[m] - fi, zero), step) - min(
            max(lo[m] - fi, zero), step
        )
        if seg == 0.0:
          continue  # Every piece of length 0: nothing.
        row = r0 + i
        load_ends(u, v, du, um, vm, dum, row, m, f, ends)
        if shaded:
          load_shading(d, s, dm, sm, row, m, ends)
        n = _segment(acc, n, ends, 0.5 * seg, bins_x, bins_y, min_den,
                     shaded, work)  # fmt: skip
        if n > MAX_KEYS:
          break
      _clear(acc, n)
      if n > MAX_KEYS or at + n > end:
        span[b, m, 0], span[b, m, 1] = at, WALK
        continue
      span[b, m, 0], span[b, m, 1] = at, n
      for q in range(n):
        keys[at + q] = kk[q]
        for c in range(weights.shape[1]):
          weights[at + q, c] = ww[q, c]
      at += n


@kernel(nogil=True, parallel=True)
def _clear_weights(fields, shade, box, start, length, first_row, num_steps,
                   step, min_den, bins_x, bins_y, workers, span, keys,
                   weights):  # fmt: skip
  """Fills span, keys, weights (module docstring) of tiles whose segments
  i < num_steps[t] start at pool row first_row[t] + i (start, length [T,
  tile]: the rays' lo and chord, the pool's dtype); worker w takes tiles
  w, w + workers, ..."""
  n_tiles, tile = start.shape
  mean = keys.shape[0] // max(span.shape[0] * tile, 1)
  for wk in numba.prange(workers):
    acc = (
        np.zeros(MAX_KEYS, np.int64),
        np.zeros((MAX_KEYS, 3)),
        np.zeros(HASH, np.int64),
        np.zeros(MAX_KEYS, np.int64),
    )
    work = (np.zeros((NUM_POINTS, 4)), np.zeros(NUM_PIECES), np.zeros(2))
    scratch = (acc, np.zeros((3, 5)), work)
    for t in range(wk, n_tiles, workers):
      lo = start[t]
      _tile_weights(
          fields,
          shade,
          box,
          lo,
          lo + length[t],
          first_row[t],
          num_steps[t],
          step,
          min_den,
          bins_x,
          bins_y,
          mean,
          scratch,
          span,
          keys,
          weights,
      )


def clear_weights(fields, shade, box, start, length, first_row, num_steps,
                  step_mm, bins, mean_keys=MEAN_KEYS,
                  zeros=np.zeros):  # fmt: skip
  """(span, keys, weights) of a pre-integrated pool (module docstring).

  Args:
    fields: (u, v, du, u_mid, v_mid, du_mid), each [N, tile] (float32 or
      float64: the weights' dtype).
    shade: (diffuse, specular, diffuse_mid, specular_mid) [N, tile] uint16,
      or None (unshaded).
    box: [N // BLOCK, tile, 4] the pool's block boxes.
    start, length: [T, tile] the rays' box entry past their grid point and
      chord (mm).
    first_row: [T] each tile's first pool row (a multiple of BLOCK).
    num_steps: [T] its segments.
    step_mm: the cache's step.
    bins: (bins_y, bins_x) of the TF tables the cache is rendered with.
    mean_keys: entries per block on average (a tile's share).
    zeros: the outputs' allocator (np.zeros' signature).

  Returns:
    span [N // BLOCK, tile, 2] int32, keys [E] int32, weights [E, 3] (or
    [E, 1] unshaded), E = N // BLOCK * tile * mean_keys; blocks no tile
    walks: span (0, 0).
  """
  by, bx = (int(b) for b in bins)
  fields = tuple(read_only(x) for x in fields)
  rows, tile = fields[0].shape
  dtype = fields[0].dtype
  if shade is None:
    shade = (np.zeros((0, tile), np.uint16),) * 4
  shade = tuple(read_only(x) for x in shade)
  size = rows // BLOCK * tile * mean_keys
  span = zeros((rows // BLOCK, tile, 2), np.int32)
  keys = zeros(size, np.int32)
  weights = zeros((size, 3 if shade[0].shape[0] else 1), dtype)
  with native_lock.LOCK:
    _clear_weights(
        fields,
        shade,
        read_only(box),
        np.asarray(start).astype(dtype),
        np.asarray(length).astype(dtype),
        np.asarray(first_row, np.int64),
        np.asarray(num_steps, np.int64),
        dtype.type(step_mm),
        float(np.finfo(dtype).eps) ** 2,
        np.int64(bx),
        np.int64(by),
        numba.get_num_threads(),
        span,
        keys,
        weights,
    )
  return span, keys, weights


_FIELDS = ('u', 'v', 'du', 'u_mid', 'v_mid', 'du_mid')
_SHADE = ('diffuse', 'specular', 'diffuse_mid', 'specular_mid')


def of_pool(pool, first_chunk, num_steps, start, length, step_mm, bins,
            zeros=np.zeros):  # fmt: skip
  """{clear_span, clear_key, clear_weight} (CacheTiles' fields) of a
  pre-integrated pool {name: [N, tile]} (shaded: with diffuse, ...; its
  block boxes: box) whose tile t starts at chunk first_chunk[t]; zeros:
  clear_weights'."""
  shade = None
  if pool.get('diffuse') is not None:
    shade = [pool[k] for k in _SHADE]
  span, keys, weights = clear_weights(
      [pool[k] for k in _FIELDS],
      shade,
      pool['box'],
      start,
      length,
      np.asarray(first_chunk, np.int64) * CHUNK,
      num_steps,
      step_mm,
      bins,
      zeros=zeros,
  )
  return dict(clear_span=span, clear_key=keys, clear_weight=weights)


def of_tiles(tiles, step_mm, bins):
  """of_pool of a pre-integrated cache's CacheTiles (e.g. after its fields
  were changed: rebuild its boxes first)."""
  pool = {k: getattr(tiles, k) for k in _FIELDS + _SHADE + ('box',)}
  return of_pool(
      pool,
      tiles.first_chunk,
      tiles.num_steps,
      tiles.start,
      tiles.length,
      step_mm,
      bins,
  )


@numba.njit(**HELPER)
def scatter_block(acc, span, keys, weights, b, m, optics, g_e, g_lt):
  """Adds clear block b of ray m's cotangent into acc [bins, 8] with the
  ray's g_e [3], g_lt; False (nothing added) when it must be walked."""
  first, n = span[b, m, 0], span[b, m, 1]
  if n == WALK:
    return False
  shaded = weights.shape[1] > 1
  for q in range(first, first + n):
    key = keys[q]
    w_s = weights[q, 1] if shaded else 0.0
    w_d = weights[q, 2] if shaded else 0.0
    g = _g_mean(optics, g_e, g_lt, weights[q, 0], w_s, w_d)
    row, c0 = key >> 1, 4 * (key & 1)
    acc[row, c0] += g[0]
    acc[row, c0 + 1] += g[1]
    acc[row, c0 + 2] += g[2]
    acc[row, c0 + 3] += g[3]
  return True
