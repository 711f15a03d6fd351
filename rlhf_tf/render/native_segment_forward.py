"""The numba forward walker of the native pre-integrated cached march
(``rlhf_tf.render.cached_native_segments``: what and why; one segment's
split and optics in registers in ``native_segment_regs``, after
``native_segment_plan`` and ``native_segment_optics``): per group of rays,
front to back over segments (row i to row i + 1), skipping blocks of them
whose coarse (u, v) box the TF leaves clear (``native_block_boxes``) and
surely transparent ones (their boxes stored in the cache:
``native_segment_boxes``; or computed here), stopping at T < threshold.

A ray's classified segments go in pairs: the first one's split and table
reads are held until the next one's (in the block) are done, then both
segments' optics run in one set of 8-lane vectors
(``native_segment_regs.pair``: the march is bound by each segment's chain
of dependent vector operations, and two independent chains share it), and
they are composited in turn. If the first takes T below threshold, the
second is dropped and the ray's segment count set back (the walk past the
first tested the threshold without its opacity), so colour, log T and
counts are those of compositing each segment as it comes, bit for bit
(tests/test_native_segment_forward.py). Each pair lives within one pass of
the walk's loop (``_next`` finds each segment): with the first segment
carried from pass to pass as a tuple, LLVM rebuilt and spilled its vectors
per ray and block (perf: ~9 % of a shaded re-render's samples).

Tried and not kept (Cranium 256^2, paired ratios against this walk, one
thread, within a loaded machine's noise of +-2 %): a pair's second segment
taken from the next block (~4 % of classified segments go alone; resumed
walk per ray: 0.97-1.01); steps written once per ``_next`` instead of per
segment (0.99-1.01); piece_means' two divisions (slope lane 0, 1 / du) in
one 2-lane division (the 4-lane one LLVM kept goes too: 0.99-1.01).
Session 14 (same measure, load 3-5): the (P, V) table as row pairs [bins,
2, 8] (a piece end's two rows in one 64-byte line; built per call) 1.00
unshaded, 1.03 shaded; the table in a 2 MB huge page 1.02; both segments
of a pair split first, then their lookups interleaved 1.03-1.06; lookups
without the zero-length branch 1.01; a uint16 summed-area table (counts
mod 2^16) 0.97-0.99 but a full 256^2 table's 65536 reads as 0, and with
that closed (a box of 2^16 bins or more taken as not clear) 0.99-1.00;
groups taken by whichever worker is free (an atomic counter) 1.04-1.08
in 2-thread wall-clock. Where the time goes (perf cpu-clock samples by
code region; numba's code has no symbols: dump the process's executable
anonymous mappings at exit and objdump them at their addresses): a
segment's table lookups ~45 %, its ends and split ~18 %, optics ~11 %, the
walk and its tests ~13 %. A table that fits L1 (wrong images) is only
0.86-0.91 without termination: the lookups cost their dependent chain
(split, bin index, load, lerp, division) more than their cache misses.
Session 15 (paired, one thread, Cranium az 30, shaded / unshaded): the
unshaded walk compiled without the shading code (``lit_flag``) x 1.003 /
0.962 (az 30, 90, 150: 27 pairs, load 1.1). Not kept: extremum's one division
chosen by a branch 1.035 / 1.052; error_model='numpy' 1.016 / 1.000;
pool rows indexed unsigned (no wraparound) 1.017 / 1.046; a block's 16
box tests at once, the next open segment by its trailing zeros 1.009 /
1.019; the next block's pool rows prefetched 1.014 / 1.025; boxes known
stored by type 1.013 / 1.014; each half's crest tau stored in the cache
([N, tile, 2] float64, 156 MB; 39 % of the pool's halves bracket one;
+0.2-0.36 s of one-thread build) 1.038 / 1.022, though a split with no
crest at all (wrong images) is 0.82 / 0.80 and one whose crest is
computed but not used (behind a predicted branch) 0.95 / 0.95. Counts:
751k classified segments, 1.82M pieces of non-zero length, 318k crest
halves; the lookups read 52k bins, 90 % of reads in 16.5k (528 KB, over
a core's 512 KB L2). Session 16 (same measure, 27 pairs, load 3.5): a
plain walk that first finds a ray's next K classified segments in a
block, then runs them as independent iterations (pairs, or one by one),
then composites them in order (bit-identical) 1.03-1.16 shaded, 1.07-1.22
unshaded for K = 2-16: no per-segment gain (a segment is ~440 cycles, more
than the out-of-order window), and the walk no longer hides behind optics.
Session 21 (one thread, Cranium az 30 unshaded, the first 1M of the
2.6M segments ``_next`` classifies without termination, in walk order,
outside the walk): per segment ``prepare`` + ``_optics4`` 117 ns, in
pairs (``pair``) 106 ns; the same work stage by stage over 16 segments
(all splits, then all lookups, then all optics: each stage's chains
independent) 104 ns, of which ends and split 33 ns, lookups 50 ns, optics
24 ns. So not the chain's latency but its instruction count bounds a
segment; a split written branch-free for SIMD lanes (selects, one loop
per field) was not vectorised by LLVM and took 14.5 ns per half against
10.0 ns for ``extremum``'s branches (74 % of halves leave at the sign
test). What is left is explicit vectors across segments (AVX2: 4 float64
lanes; llvmlite IR as ``native_pv``), not started. A first piece of it,
a pair's four halves split in one 4-lane call (an llvmlite intrinsic,
bit for bit ``extremum`` on 2.6M halves and edge cases; alone 4.85 ns per
half against 10.0), made the re-render no faster (Cranium az 60, 2
threads, 25 rounds, two processes of each in turn: fastest rounds 58.2 /
48.6 ms shaded / unshaded against 58.2 / 48.2): in the walk the scalar
split overlaps the rest.
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render.native_block_boxes import BLOCK, block_clear
from rlhf_tf.render.native_borrow import borrowed
from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_pool_rows import columns, end, shade
from rlhf_tf.render.native_segment_boxes import clear
from rlhf_tf.render.native_segment_kept import key, record
from rlhf_tf.render.native_segment_optics import _optics4
from rlhf_tf.render.native_segment_plan import occupancy
from rlhf_tf.render.native_segment_regs import (
    pair,
    prepare,
    surely_transparent,
)


def lit_flag(shading, dtype):
  """forward_kernel's lit of a march with params' shading and a table of
  dtype: True if on, else None. A runtime flag kept the shading code in
  the unshaded walk, whose registers it crowded (Cranium 256^2 unshaded,
  one thread, paired against a runtime flag: x 0.90-0.965).

  A float64 march (the exactness checks' dtype, never a fast path) always
  gets True, the runtime flag (the same image: shaded = shading > 0): one
  float64 walk compiled for both, not two (~25 s of numba each)."""
  if np.dtype(dtype) == np.float64:
    return True
  return True if shading > 0 else None


@numba.njit(**HELPER)
def _composite(rgb, log_t, trans, m, out):
  """Composites a segment's out (lt, e_0, e_1, e_2, a) behind ray m's."""
  lt, e_r, e_g, e_b, a = out
  t_i = trans[m]
  rgb[m, 0] += t_i * e_r
  rgb[m, 1] += t_i * e_g
  rgb[m, 2] += t_i * e_b
  log_t[m] += lt
  trans[m] = t_i * (1.0 - a)  # T_{i+1} = T_i exp(lt).


@numba.njit(**HELPER)
def scratch(n):
  """The walk's scratch arrays for groups of up to n rays (``_forward_group``
  takes them from its caller, which holds them: borrowed views)."""
  return (
      np.zeros(n),  # trans
      np.zeros(n, np.bool_),  # done
  )


@numba.njit(**HELPER)
def _next(i, i1, m, ray, skip, ends, f):
  """(i, half, stop): ray m's first classified segment (not clear) from
  block index i on (before i1): i, or -1 if none; half, its half length;
  stop, whether the ray ended (past its end or T < threshold) first. Sets
  steps[m] to the segments walked. ray: (lo, hi, trans, steps, r0, step,
  threshold); skip: (seg_box, seg_boxed, occ, bins_x, bins_y); ends: the
  pool fields u, v, du, u_mid, v_mid, du_mid."""
  lo, hi, trans, steps, r0, step, threshold = ray
  seg_box, seg_boxed, occ, bins_x, bins_y = skip
  u, v, du, um, vm, dum = ends
  zero = lo.dtype.type(0.0)
  while i < i1:
    fi = lo.dtype.type(i) * step
    if fi >= hi[m] or trans[m] < threshold:
      return -1, 0.0, True
    steps[m] = i + 1
    seg = min(max(hi[m] - fi, zero), step) - min(max(lo[m] - fi, zero), step)
    row = r0 + i
    i += 1
    if seg_boxed:
      if clear(occ, seg_box, row, m):
        continue  # Before its ends are loaded.
    else:
      x_f = end(u, v, du, row, m, f)
      x_m = end(um, vm, dum, row, m, f)
      x_b = end(u, v, du, row + 1, m, f)
      if surely_transparent(occ, bins_x, bins_y, x_f, x_m, x_b, 0.5 * seg):
        continue
    return i - 1, 0.5 * seg, False
  return -1, 0.0, False


@numba.njit(**HELPER)
def _prepared(row, m, half, ends, terms, table, bins_x, bins_y, min_den,
              shaded, f):  # fmt: skip
  """native_segment_regs.prepare of segment row of ray m (ends: as
  ``_next``'s; terms: the pool fields d, s, d_mid, s_mid)."""
  u, v, du, um, vm, dum = ends
  d, s, dm, sm = terms
  x_f = end(u, v, du, row, m, f)
  x_m = end(um, vm, dum, row, m, f)
  x_b = end(u, v, du, row + 1, m, f)
  if shaded:
    shades = (
        shade(d, s, row, m),
        shade(dm, sm, row, m),
        shade(d, s, row + 1, m),
    )
  else:
    shades = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0))
  return prepare(
      table, bins_x, bins_y, x_f, x_m, x_b, half, min_den, shades, shaded
  )


@numba.njit(nogil=True)
def _forward_group(
    fields,
    seg_box,
    box,
    lo,
    hi,
    r0,
    num,
    table,
    occ,
    bins_x,
    bins_y,
    params,
    threshold,
    rgb,
    log_t,
    steps,
    work,
    kept,
    at,
    end,
    lit,
):
  """Marches one group's rays (pool columns of lo, hi [n]): fills rgb
  [n, 3], log_t [n] (log T_N) and steps [n] (segments walked), block by
  block of native_block_boxes.BLOCK segments (ray by ray within one:
  its rows are a few cache lines), skipping the blocks whose box
  [blocks, n, 4] is clear (no boxes: box has 0 blocks) and the segments
  whose box seg_box [rows, n] is (native_segment_boxes; none: 0 rows,
  surely_transparent of the ends). work:
  ``scratch``. Records each classified segment's means in kept (res, keys,
  span: ``native_segment_kept``; None: a plain render, compiled without
  the records' code) at at .. end - 1; returns the next free record.
  Every array is used through a ``borrowed`` view (the caller holds them):
  no reference counting per segment. lit: None for an unshaded march
  (``lit_flag``), else True."""
  # Unpacked once: array views made per segment would each cost a
  # reference count (the empty walk 1.7x slower).
  u, v, du, um, vm, dum, d, s, dm, sm = fields
  u, v, du = borrowed(u), borrowed(v), borrowed(du)
  um, vm, dum = borrowed(um), borrowed(vm), borrowed(dum)
  d, s, dm, sm = borrowed(d), borrowed(s), borrowed(dm), borrowed(sm)
  lo, hi, table, occ = (
      borrowed(lo),
      borrowed(hi),
      borrowed(table),
      borrowed(occ),
  )
  rgb, log_t, steps = borrowed(rgb), borrowed(log_t), borrowed(steps)
  box, seg_box = borrowed(box), borrowed(seg_box)
  boxed = box.shape[0] > 0
  seg_boxed = seg_box.shape[0] > 0
  trans, done = work
  trans, done = borrowed(trans), borrowed(done)
  if kept is not None:  # (numba prunes it by type: None or a tuple.)
    res, res_keys = borrowed(kept[0]), borrowed(kept[1])
  n = lo.shape[0]
  step, shading, ka, kd, ks, min_den = params
  # Unshaded: a walk compiled without the shading code (numba prunes by
  # lit's type; LLVM folds the constant into the optics' branches).
  if lit is None:
    shaded = False
  else:
    shaded = shading > 0
  optics = (shaded, ka, kd, ks)
  f = table.dtype.type
  trans[:n] = 1.0
  done[:n] = False
  rgb[...] = 0.0
  log_t[...] = 0.0
  steps[...] = 0
  live = n
  k0 = r0 // BLOCK
  ray = (lo, hi, trans, steps, r0, step, threshold)
  skip = (seg_box, seg_boxed, occ, bins_x, bins_y)
  ends = (u, v, du, um, vm, dum)
  terms = (d, s, dm, sm)
  for i0 in range(0, num, BLOCK):
    if live == 0:
      break
    i1 = min(i0 + BLOCK, num)
    for m in range(n):
      if done[m]:
        continue
      if boxed and block_clear(occ, box, k0 + i0 // BLOCK, m):
        # Nothing to composite in this block (native_block_boxes): only
        # its end and termination tests.
        if trans[m] < threshold:
          done[m] = True
          live -= 1
          continue
        if lo.dtype.type(i1 - 1) * step < hi[m]:
          # i * step does not decrease with i (rounding is monotone): the
          # ray goes on past the block, one test for its BLOCK.
          steps[m] = i1
          continue
        for i in range(i0, i1):
          if lo.dtype.type(i) * step >= hi[m]:
            done[m] = True
            live -= 1
            break
          steps[m] = i + 1
        continue
      # The ray's classified segments two at a time: a waits for b (the
      # next one in the block), then both segments' optics run in one set
      # of 8-lane vectors (pair). Each one's state lives within one pass
      # of this loop: a tuple carried from pass to pass (a segment
      # "pending" across the walk) made LLVM rebuild and spill its
      # vectors per ray and block (perf: ~9 % of a shaded re-render).
      i = i0
      stop = False
      while True:
        ia, half_a, stop = _next(i, i1, m, ray, skip, ends, f)
        if ia < 0:
          break
        a = _prepared(ia + r0, m, half_a, ends, terms, table, bins_x,
                      bins_y, min_den, shaded, f)  # fmt: skip
        # (_next tests trans[m] without a's opacity: if that takes it
        # below threshold, steps is set back when a is composited.)
        ib, half_b, stop = _next(ia + 1, i1, m, ray, skip, ends, f)
        if ib < 0:  # Alone: on its own.
          means, ls, ds, ss = a
          _composite(
              rgb, log_t, trans, m, _optics4(*means, ls, ds, ss, *optics)
          )
          if kept is not None:
            at = record(res, res_keys, at, end, means, key(ia, m))
          if trans[m] < threshold:
            steps[m] = ia + 1
            stop = True
          break
        b = _prepared(ib + r0, m, half_b, ends, terms, table, bins_x,
                      bins_y, min_den, shaded, f)  # fmt: skip
        out = pair(a, b, optics)
        _composite(rgb, log_t, trans, m, out[:5])
        if kept is not None:
          at = record(res, res_keys, at, end, a[0], key(ia, m))
        if trans[m] < threshold:
          # The ray stops after a: b is not composited (as if each had
          # been composited in turn).
          steps[m] = ia + 1
          stop = True
          break
        _composite(rgb, log_t, trans, m, out[5:])
        if kept is not None:
          at = record(res, res_keys, at, end, b[0], key(ib, m))
        i = ib + 1
      if stop:
        done[m] = True
        live -= 1
  return at


@kernel(parallel=True, nogil=True)
def forward_kernel(
    fields,
    seg_box,
    start,
    length,
    first_row,
    num_steps,
    box,
    table,
    bins_x,
    bins_y,
    params,
    threshold,
    group,
    workers,
    rgb,
    log_t,
    steps,
    kept,
    lit,
):
  """rgb [T, tile, 3], log_t [T, tile], steps [T, tile] from the pool
  fields (u, v, du, u_mid, v_mid, du_mid, d, s, d_mid, s_mid: [rows,
  tile]), segment boxes [rows, tile] (native_segment_boxes; or [0, tile]:
  none) and block boxes [rows // BLOCK, tile, 4] (native_block_boxes;
  or [0, tile, 4]: none); worker w takes groups w, w + workers, ...
  (cached_native._forward_kernel). kept: (res, keys, span) the classified
  segments' records (``native_segment_kept``; None: none), worker w's in
  records w * per .. (w + 1) * per - 1. lit: True where params' shading
  is on, else None (compiled without the shading code: ``lit_flag``)."""
  n_tiles, tile = start.shape
  per = 0
  if kept is not None:
    per = kept[0].shape[0] // workers
  groups = -(-tile // group)
  jobs = n_tiles * groups
  occ = occupancy(table, bins_x)
  for wk in numba.prange(workers):
    work = scratch(group)
    at = wk * per
    end = at + per
    for job in range(wk, jobs, workers):
      t = job // groups
      g0 = (job % groups) * group
      g1 = min(g0 + group, tile)
      lo = start[t, g0:g1]
      first = at
      at = _forward_group(
          columns(fields, g0, g1),
          seg_box[:, g0:g1],
          box[:, g0:g1],
          lo,
          lo + length[t, g0:g1],
          first_row[t],
          num_steps[t],
          table,
          occ,
          bins_x,
          bins_y,
          params,
          threshold,
          rgb[t, g0:g1],
          log_t[t, g0:g1],
          steps[t, g0:g1],
          work,
          kept,
          at,
          end,
          lit,
      )
      if kept is not None:
        kept[2][job, 0] = first
        kept[2][job, 1] = at - first
