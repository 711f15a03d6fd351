"""Numba kernel of the native pre-integrated direct renderer
(rlhf_tf.render.direct_native_segments): forward only.

One ray at a time, in float64 whatever the input dtype, with the optics of
``ray_samples.sample_rays`` (settings.preintegrate) +
``preintegration.classify`` + ``compositing.composite_emission``
(equations in ``rlhf_tf.render.raymarch`` and ``preintegration``):

- segment i of a ray runs between its ends, the depth-grid points i step
  and (i + 1) step past the ray's last grid point before the box entry
  (``direct_kernels._ray``), clamped to the box (``sampling.segment_ends``),
  and is sampled at both ends and at its midpoint;
- at each sample (``segment_sampling``): trilinear HU and its exact slope
  along the ray (voxel axes that clamp contribute 0:
  ``sampling.trilinear_packed``'s tangent), the JH coordinates u, v and
  du / dt of ``preintegration.coords`` / ``coord_slope``, and with shading
  the headlight terms from the mean gradient
  (``compositing.headlight_terms``) or, with settings.tensor_normals, from
  the gradient's structure tensor (``compositing.tensor_headlight_terms``);
- each segment is split and classified as ``native_segment_plan`` (the
  numba twin of ``preintegration.segment_plan``) does, on tuples
  (``native_segment_regs.segment``, shared with the cached forward: its
  pieces' optics 4 lanes at once, ``native_segment_optics``; bit for bit
  ``segment_forward`` unless a piece takes expm1, then within its ulp)
  and composited front to back.

What it skips (as the point-sampled ``direct_kernels`` march):

- a segment whose midpoint lies in an empty-space block
  (``empty_space.occupancy``) and every later one up to where the ray
  leaves that block (``direct_kernels._visit``): the block ranges' halo
  (``empty_space.halo_voxels``) covers every voxel the segment reads
  (pixels within 2.0005 x settings.empty_space_tolerance of the unskipped
  march); a coarse block
  of COARSE^3 blocks whose blocks are all empty is crossed at once
  (``_visit_blocks``: the same segments skipped, in fewer steps through
  the air around a head);
- the gradient loads of a segment that no TF bin with extinction can touch
  whatever its samples' gradients (``native_segment_plan.
  surely_transparent`` over every gradient row, from the HU and slopes
  alone; one load of ``direct_skip_tables.next_occupied`` instead of its
  four summed-area loads, the same answer: ~0.5 % less CPU): exact, such
  a segment adds nothing. The rest are classified
  without the exact per-piece test (``native_segment_plan.transparent``):
  it catches < 1 % of them (Cranium), each of whose pieces has mean
  extinction 0 and adds exactly nothing in the optics too, and
  costs ~4 % of the march;
- the rest of a ray once its transmittance is below the threshold.

A segment's back end is the next one's front end: sampled once. While a
segment is marched, the next one's back end and midpoint are located
(``segment_sampling.locate``: their voxels, kept for their
``sample_located``: the back end's was located twice, for the prefetch
and the sample, ~3-4 % more CPU; the midpoint's early, ~3 % less CPU)
and the caches are asked for the back end's voxels (``prefetch_corners``;
the midpoint reads mostly the cache lines of its two ends, a step being
about a voxel: asking for the midpoint's too cost ~4 % more CPU than it
saved on Cranium, and no gain once located early), and while a
classified segment is split, for the (P, V) table rows at its midpoint's
and back end's bins (``native_trilinear.prefetch_row``: the 2 MB float32
table is larger than a core's L2, and its lookups were the march's
largest stall; ~4 % less CPU on Cranium). Asking for the back end of the
segment two, three or five ahead instead of the next one's: no gain
(Cranium 256^2, paired ratios 0.99-1.0).

Samples use ``segment_sampling.sample_regs`` / ``locate`` with the
ray's ``sample_consts`` (the HU axis' reciprocal and the volume's float
limits once per ray, not per sample: ~5 % less CPU, the same values).
A segment's samples, shading, split and optics live in registers
(tuples), not in float64 scratch arrays LLVM must assume aliased (one
thread, paired: ~8 % less CPU, bit-identical).
Tried and not kept (Cranium 256^2, one thread, paired with the march
before): a per-voxel-cell HU min / max test of a segment's three cells
before sampling it (exact: it caught 71 % of the segments
``surely_transparent`` rejects after sampling, none it keeps; images
bit-identical), 12 % more CPU: testing a cell cost about what sampling
it does; coarse blocks whose blocks are all occupied crossed at once
(fewer block lookups): no gain; classified segments' optics in pairs
(``native_segment_regs.pair``, as the cached forward): 3-4 % more CPU;
sampling the next midpoint a segment early: 3-6 % more; without the
table rows' prefetch: 4-7 % more; (session 14) per-cell HU bounds built
once per volume (int16 lo / hi per cell widened by the Hermite reach of
a per-cell slope bound, exact, images bit-identical; 28 MB and 0.3 s for
Cranium) tested before sampling: they caught 55 % of what
``surely_transparent`` rejects, 1.11x CPU, 0.99-1.04x with their rows
prefetched and tested only after a clear segment: the march is bound by
its walk and the volume's cache traffic (sampling nothing at all: ~0.5x),
not by the samples' arithmetic (not classifying at all: 0.97x
unshaded); tiles claimed in Morton order, not image order: 1.01-1.06x.

An unshaded float32 march is compiled without the shading code (``lit``
None, as the cached forward's ``native_segment_forward.lit_flag``: the
structure tensor's and the optics' shading branches pruned; the same
image bit for bit): Cranium 256^2 unshaded, the kernel alone, paired
with the runtime flag in one process, azimuths 60-150: x0.96 in 2
threads (40 and 56 pairs), x0.98 in one (40 pairs). (Session 22, not
kept: the HU read from a volume of HU alone, 4 bytes a voxel instead
of the packed 16 (``trilinear_hu``, bit for bit; the gradient from the
packed volume only for segments that pass the transparency test),
x1.05-1.08: the march is not bound by the volume's cache lines.)

Tiles go to the threads as they ask (``native_tiles.next_job``), in image
order: a thread slowed by another process no longer holds the render up
while the other idles (2 threads under load: 5 % less wall-clock), and
consecutive tiles share the volume's cache lines (one thread: 5-6 % less
CPU than the 64 lanes' fixed spread sets of tiles).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rlhf_tf.render.direct_kernels import (
    _block,
    _block_exit,
    _ray,
    _segment,
    BLOCK,
    INV_BLOCK,
    INV_STEP,
    KA,
    KD,
    KS,
    MIN_DEN,
    NUM,
    SHADING,
    SKIP,
    STEP,
    THRESHOLD,
    tile_pixels,
    tiles,
    WIDTH,
)
from rlhf_tf.render.direct_skip_tables import coarse_occupancy, next_occupied
from rlhf_tf.render.native_borrow import borrowed
from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_segment_plan import (
    _column,
    _row,
)
from rlhf_tf.render.native_segment_regs import _half_columns, segment
from rlhf_tf.render.native_tiles import next_job
from rlhf_tf.render.native_trilinear import prefetch_corners, prefetch_row

# _hu_and_slope, _gradient: the native cache build's (segment_sampling).
from rlhf_tf.render.segment_sampling import (  # noqa: F401
    _gradient,
    _hu_and_slope,
    _shade_values,
    gradient_coord,
    locate,
    sample_consts,
    sample_located,
    sample_regs,
)

COARSE = 4  # Empty-space blocks per coarse block edge (16 voxels).


@numba.njit(**HELPER)
def _visit_blocks(
    i, base_t, start, end, frame, occ, nb, coarse_occ, fp, ip, state
):
  """(next sample, sample i lies in an empty block, the block state): as
  direct_kernels._visit, on two levels. state: the ray parameter where the
  ray leaves the block of the last lookup, and its occupancy; past it, the
  sample's block b is looked up (direct_kernels._block) and, when its
  coarse block b // coarse (coarse_occ: coarse_occupancy's occupancy and
  counts, and cmap [max(nb) + 1]: cmap[b] = b // coarse, cmap[-1] =
  coarse, a load instead of three integer divisions per lookup) is empty,
  the
  state is that coarse block's: a coarse block is empty only if all its
  blocks are, so the samples it skips are those _visit would skip block by
  block (the same rounding caveat, covered by the blocks' halo), in fewer
  steps. Exit planes are block faces, computed as _visit's (the same
  floats)."""
  exit_t, occupied = state
  if not ip[SKIP]:
    return i + 1, False, state
  _, mid = _segment(i, start, end, fp[STEP])
  t = base_t + mid
  if t >= exit_t:
    cocc, c_nb, cmap = coarse_occ
    b = _block(
        frame[0] + t * frame[3],
        frame[1] + t * frame[4],
        frame[2] + t * frame[5],
        nb,
        fp[INV_BLOCK],
    )
    c = (cmap[b[0]], cmap[b[1]], cmap[b[2]])
    if cocc[(c[0] * c_nb[1] + c[1]) * c_nb[2] + c[2]] == 0:
      occupied = False
      exit_t = _block_exit(c, frame, c_nb, ip[BLOCK] * cmap[-1])
    else:
      occupied = occ[(b[0] * nb[1] + b[1]) * nb[2] + b[2]] != 0
      exit_t = _block_exit(b, frame, nb, ip[BLOCK])
  if occupied:
    return i + 1, False, (exit_t, occupied)
  # The first sample whose midpoint (i + 1/2) step is past exit_t.
  x = min((exit_t - base_t) * fp[INV_STEP] + 0.5, 2.0**30)
  return max(i + 1, int(math.floor(x))), True, (exit_t, occupied)


@numba.njit(**HELPER)
def _shade(vol, shape, d, fp, ip, bins_y, at, g, shaded):
  """segment_sampling._shade_values, or (v, 0.0, 0.0) unshaded (shaded
  False: a constant of an unshaded march, which then has no shading
  code)."""
  if shaded:
    return _shade_values(vol, shape, d, fp, ip, bins_y, at, g)
  return gradient_coord(fp, bins_y, g)[0], 0.0, 0.0


@kernel(nogil=True, error_model='numpy', fastmath={'contract'})
def _march_ray(
    vol, shape, table, bins, o, d, phase, occ, nb, fp, ip, sat, coarse_occ,
    frame, lit,
):  # fmt: skip
  """(r, g, b premultiplied, log transmittance) of one ray. coarse_occ:
  (coarse_occupancy's [Cz * Cy * Cx] and (Cz, Cy, Cx), cmap: blocks to
  coarse blocks, _visit_blocks'; coarse 1: no coarse level). (A function
  of its own, not inlined into the parallel kernel: numba compiles the two
  several times faster. error_model='numpy': no division-by-zero checks,
  every divisor is guarded; fastmath contract: fused multiply-adds, ~7 %
  less CPU, the rounding of float64 products differs from the XLA march's
  by an ulp.)
  Every array is used through a ``native_borrow.borrowed`` view (the
  caller holds them): an inlined helper's array arguments would otherwise
  cost an atomic reference count each, per call, on arrays the threads
  share."""
  vol, shape, table, bins = (
      borrowed(vol),
      borrowed(shape),
      borrowed(table),
      borrowed(bins),
  )
  o, d, occ, nb = borrowed(o), borrowed(d), borrowed(occ), borrowed(nb)
  fp, ip, sat = borrowed(fp), borrowed(ip), borrowed(sat)
  cocc, c_nb, cmap = coarse_occ
  coarse_occ = (borrowed(cocc), borrowed(c_nb), borrowed(cmap))
  frame = borrowed(frame)
  by, bx = bins[0], bins[1]
  step, num, threshold = fp[STEP], ip[NUM], fp[THRESHOLD]
  # Unshaded: a march compiled without the shading code (numba prunes by
  # lit's type, LLVM folds the constant).
  if lit is None:
    shaded = False
  else:
    shaded = ip[SHADING] > 0
  optics = (shaded, fp[KA], fp[KD], fp[KS])
  k = sample_consts(shape, fp, bx)
  base_t, start, end = _ray(o, d, fp, phase, frame)
  # Samples in registers (tuples): no float64 scratch store that LLVM must
  # assume aliases the frame, the volume or the last sample.
  fr = (frame[0], frame[1], frame[2], frame[3], frame[4], frame[5])
  trans, log_t = 1.0, 0.0
  cr, cg, cb = 0.0, 0.0, 0.0
  i, last = 0, -2  # last: the segment whose back end is in b.
  b = ((0.0, 0.0), (0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
  b_shade, b_have = (0.0, 0.0, 0.0), False  # b's (v, d, s), if sampled.
  state = (-np.inf, True)  # _visit_blocks'.
  # Where segment at_i's back end and midpoint are (segment_sampling.locate).
  at, at_i = locate(k, fr, 0.0), -1
  at_m = at
  while i < num and i * step < end and trans >= threshold:
    nxt, empty, state = _visit_blocks(
        i, base_t, start, end, frame, occ, nb, coarse_occ, fp, ip, state
    )
    if empty:
      i = nxt
      continue
    front = min(max(i * step, start), end)
    back = min(max((i + 1) * step, start), end)
    seg = back - front
    half = 0.5 * seg
    # This midpoint and back end: located while the previous segment was
    # marched (the same t: (i + 1) step >= start), else now.
    if at_i != i:
      at = locate(k, fr, base_t + back)
      at_m = locate(k, fr, base_t + front + half)
    # The next segment's back end, while this one is marched.
    after = min((i + 2) * step, end)
    at_next = locate(k, fr, base_t + after)
    prefetch_corners(vol, at_next[3], *k[7])
    # Its midpoint: front + half as the next iteration computes them.
    at_next_m = locate(k, fr, base_t + back + 0.5 * (after - back))
    if last == i - 1:  # The previous back end is this front end.
      f, f_shade, f_have = b, b_shade, b_have
    else:
      f = sample_regs(vol, k, fr, base_t + front)
      f_shade, f_have = b_shade, False  # f_shade: a placeholder.
    m = sample_located(vol, k, fr, at_m)
    b = sample_located(vol, k, fr, at)
    b_have = False
    last = i
    at, at_m, at_i = at_next, at_next_m, i + 1
    i = nxt
    # native_segment_plan.surely_transparent over every gradient row.
    f_u, m_u, b_u = (f[0][0], 0.0, f[0][1]), (m[0][0], 0.0, m[0][1]), (
        b[0][0], 0.0, b[0][1])  # fmt: skip
    c0, c1 = _half_columns(f_u, m_u, half, bx, bx, 0)
    c0, c1 = _half_columns(m_u, b_u, half, bx, c0, c1)
    if sat[c0] >= c1:
      continue
    if not f_have:
      f_shade = _shade(vol, shape, d, fp, ip, by, f[1], f[2], shaded)
    m_shade = _shade(vol, shape, d, fp, ip, by, m[1], m[2], shaded)
    b_shade = _shade(vol, shape, d, fp, ip, by, b[1], b[2], shaded)
    b_have = True
    # The table rows the midpoint's and back end's lookups will likely
    # read, while the segment is split.
    for u, v in ((m[0][0], m_shade[0]), (b[0][0], b_shade[0])):
      row = _row(v, by) * bx + _column(u, bx)
      prefetch_row(table, row)
      prefetch_row(table, row + bx)
    lt, e_0, e_1, e_2, alpha = segment(
        table, bx, by,
        (f[0][0], f_shade[0], f[0][1]),
        (m[0][0], m_shade[0], m[0][1]),
        (b[0][0], b_shade[0], b[0][1]),
        half, fp[MIN_DEN],
        ((f_shade[1], f_shade[2]), (m_shade[1], m_shade[2]),
         (b_shade[1], b_shade[2])),
        optics,
    )  # fmt: skip
    cr += trans * e_0
    cg += trans * e_1
    cb += trans * e_2
    log_t += lt
    trans *= 1.0 - alpha  # T_{i+1} = T_i exp(lt).
  return cr, cg, cb, log_t


@kernel(nogil=True)
def forward_kernel(
    vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
    coarse, rgb_out, log_t_out, lit,
):  # fmt: skip
  """rgb_out [N, 3] premultiplied colour, log_t_out [N] log transmittance.

  vol [Z * Y * X, 4] packed volume; shape (Z, Y, X); table
  [bins_y * bins_x, 8] (P, V) (preintegration.segment_table, flat); bins
  (bins_y, bins_x); origins, directions [N, 3] (N = H * W, row-major
  pixels); phase [N]; occ [Bz * By * Bx] uint8; nb (Bz, By, Bx); fp, ip:
  direct_kernels' parameters; coarse: blocks per coarse block edge (an
  empty coarse block is crossed at once; 1: none)."""
  lanes = tiles(ip)[1]
  sat = next_occupied(table, bins[1])
  cocc, c_nb = coarse_occupancy(occ, nb, coarse)
  # cmap[b] = b // coarse for every block index b; cmap[-1] = coarse.
  cmap = np.empty(max(nb[0], max(nb[1], nb[2])) + 1, np.int64)
  for b in range(cmap.size - 1):
    cmap[b] = b // coarse
  cmap[-1] = coarse
  frame = np.empty((lanes, 9))  # _ray's, per lane.
  counter = np.zeros(1, np.int64)  # Tiles claimed (native_tiles).
  _lanes(
      vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
      sat, cocc, c_nb, cmap, frame, counter, rgb_out, log_t_out, lit,
  )  # fmt: skip


@kernel(parallel=True, nogil=True)
def _lanes(
    vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
    sat, cocc, c_nb, cmap, frame, counter, rgb_out, log_t_out, lit,
):  # fmt: skip
  """forward_kernel's parallel march: lane l marches the tiles it claims
  (``native_tiles.next_job`` on counter, int64 [1] = 0: in image order,
  each to whichever thread asks next) with the frame row [l]
  (``_march_ray``'s). Every array is
  used through a borrowed view (forward_kernel holds them): no reference
  count per ray on arrays the threads share."""
  vol, shape, table, bins = (
      borrowed(vol),
      borrowed(shape),
      borrowed(table),
      borrowed(bins),
  )
  origins, directions = borrowed(origins), borrowed(directions)
  phase, occ, nb = borrowed(phase), borrowed(occ), borrowed(nb)
  fp, ip, sat = borrowed(fp), borrowed(ip), borrowed(sat)
  coarse_occ = (borrowed(cocc), borrowed(c_nb), borrowed(cmap))
  frame, counter = borrowed(frame), borrowed(counter)
  rgb_out, log_t_out = borrowed(rgb_out), borrowed(log_t_out)
  n_tiles, lanes, tiles_x = tiles(ip)
  w = ip[WIDTH]
  for lane in numba.prange(lanes):
    frame_l = frame[lane]
    while True:
      job = next_job(counter)
      if job >= n_tiles:
        break
      r0, r1, c0, c1 = tile_pixels(job, tiles_x, ip)
      for r in range(r0, r1):
        for c in range(c0, c1):
          p = r * w + c
          cr, cg, cb, log_t = _march_ray(
              vol, shape, table, bins, origins[p], directions[p], phase[p],
              occ, nb, fp, ip, sat, coarse_occ, frame_l, lit,
          )  # fmt: skip
          rgb_out[p, 0] = cr
          rgb_out[p, 1] = cg
          rgb_out[p, 2] = cb
          log_t_out[p] = log_t
