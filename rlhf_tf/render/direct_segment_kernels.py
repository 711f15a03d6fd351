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
- each segment is split and classified by ``native_segment_plan`` (the
  numba twin of ``preintegration.segment_plan``, shared with the cached
  march) and composited front to back.

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
  alone): exact, such a segment adds nothing. The rest are classified
  without the exact per-piece test (``native_segment_plan.transparent``):
  it catches < 1 % of them (Cranium), each of whose pieces has mean
  extinction 0 and adds exactly nothing in ``segment_forward`` too, and
  costs ~4 % of the march;
- the rest of a ray once its transmittance is below the threshold.

A segment's back end is the next one's front end: sampled once. While a
segment is marched, the caches are asked for the voxels of the next one's
back end (``segment_sampling.prefetch_at``; its midpoint reads mostly the
cache lines of its two ends, a step being about a voxel: asking for the
midpoint's too cost ~4 % more CPU than it saved on Cranium), and while a
classified segment is split, for the (P, V) table rows at its midpoint's
and back end's bins (``native_trilinear.prefetch_row``: the 2 MB float32
table is larger than a core's L2, and its lookups were the march's
largest stall; ~4 % less CPU on Cranium). Asking for the back end of the
segment two, three or five ahead instead of the next one's: no gain
(Cranium 256^2, paired ratios 0.99-1.0).

Samples use ``segment_sampling.sample_at`` / ``prefetch_at`` with the
ray's ``sample_consts`` (the HU axis' reciprocal and the volume's float
limits once per ray, not per sample: ~5 % less CPU, the same values).
Tried and not kept (Cranium 256^2, one thread, paired with the march
before): a per-voxel-cell HU min / max test of a segment's three cells
before sampling it (exact: it caught 71 % of the segments
``surely_transparent`` rejects after sampling, none it keeps; images
bit-identical), 12 % more CPU: testing a cell cost about what sampling
it does; coarse blocks whose blocks are all occupied crossed at once
(fewer block lookups): no gain.
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
from rlhf_tf.render.native_borrow import borrowed
from rlhf_tf.render.native_segment_plan import (
    _column,
    _row,
    NUM_PIECES,
    NUM_POINTS,
    occupancy,
    segment_forward,
    split,
    split_shading,
    surely_transparent,
)
from rlhf_tf.render.native_trilinear import prefetch_row

# _hu_and_slope, _gradient: the native cache build's (segment_sampling).
from rlhf_tf.render.segment_sampling import (  # noqa: F401
    _gradient,
    _hu_and_slope,
    prefetch_at,
    sample_at,
    sample_consts,
    shade_end,
)

COARSE = 4  # Empty-space blocks per coarse block edge (16 voxels).


@numba.njit(nogil=True)
def coarse_occupancy(occ, nb, coarse):
  """([Cz * Cy * Cx] uint8 occupancy of coarse blocks of coarse^3 blocks:
  0 where every block in it is empty (occ [Bz * By * Bx]), their counts
  (Cz, Cy, Cx) = ceil(nb / coarse))."""
  cb = np.empty(3, np.int64)
  for a in range(3):
    cb[a] = -(-nb[a] // coarse)
  out = np.zeros(cb[0] * cb[1] * cb[2], np.uint8)
  for z in range(nb[0]):
    for y in range(nb[1]):
      for x in range(nb[2]):
        if occ[(z * nb[1] + y) * nb[2] + x]:
          c = ((z // coarse) * cb[1] + y // coarse) * cb[2] + x // coarse
          out[c] = 1
  return out, cb


@numba.njit(inline='always')
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


@numba.njit(nogil=True, cache=True, error_model='numpy', fastmath={'contract'})
def _march_ray(
    vol, shape, table, bins, o, d, phase, occ, nb, fp, ip, sat, coarse_occ,
    scratch,
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
  ends, corner, grads, have, points, lengths, taus, e, frame = scratch
  ends, corner, grads = borrowed(ends), borrowed(corner), borrowed(grads)
  have, points, lengths = borrowed(have), borrowed(points), borrowed(lengths)
  taus, e, frame = borrowed(taus), borrowed(e), borrowed(frame)
  by, bx = bins[0], bins[1]
  step, num, threshold = fp[STEP], ip[NUM], fp[THRESHOLD]
  optics = (ip[SHADING] > 0, fp[KA], fp[KD], fp[KS])
  k = sample_consts(shape, fp, bx)
  base_t, start, end = _ray(o, d, fp, phase, frame)
  trans, log_t = 1.0, 0.0
  cr, cg, cb = 0.0, 0.0, 0.0
  i, last = 0, -2  # last: the segment whose back end is in ends[2].
  state = (-np.inf, True)  # _visit_blocks'.
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
    # The next segment's back end, while this one is marched.
    after = min((i + 2) * step, end)
    prefetch_at(vol, k, frame, base_t + after)
    if last == i - 1:  # The previous back end is this front end.
      for c in range(5):
        ends[0, c] = ends[2, c]
      for c in range(4):
        corner[0, c] = corner[2, c]
      for c in range(3):
        grads[0, c] = grads[2, c]
      have[0] = have[2]
    else:
      sample_at(vol, k, frame, base_t + front, ends, 0, corner, grads)
      have[0] = False
    sample_at(vol, k, frame, base_t + front + 0.5 * seg, ends, 1, corner, grads)
    sample_at(vol, k, frame, base_t + back, ends, 2, corner, grads)
    have[1] = have[2] = False
    last = i
    i = nxt
    # Any gradient row: a v range of [0, bins_y - 1].
    v_front = ends[0, 1]
    ends[0, 1] = 0.0
    ends[1, 1] = by - 1.0
    ends[2, 1] = by - 1.0
    if surely_transparent(sat, bx, by, ends, 0.5 * seg):
      ends[0, 1] = v_front
      continue
    ends[0, 1] = v_front
    for r in range(3):
      if not have[r]:
        shade_end(vol, shape, d, fp, ip, by, ends, r, corner, grads)
        have[r] = True
    # The table rows the midpoint's and back end's lookups will likely
    # read, while the segment is split.
    for r in range(1, 3):
      row = _row(ends[r, 1], by) * bx + _column(ends[r, 0], bx)
      prefetch_row(table, row)
      prefetch_row(table, row + bx)
    split(ends, 0.5 * seg, bx, fp[MIN_DEN], points, lengths, taus)
    # No transparent() test here (module docstring): its pieces of mean
    # extinction 0 add e = 0, lt = 0 (the same floats), cheaper than it.
    if ip[SHADING]:
      split_shading(ends, taus, points)
    lt = segment_forward(table, bx, by, points, lengths, optics, e)
    cr += trans * e[NUM_PIECES, 0]
    cg += trans * e[NUM_PIECES, 1]
    cb += trans * e[NUM_PIECES, 2]
    log_t += lt
    trans *= 1.0 - e[NUM_PIECES, 3]  # T_{i+1} = T_i exp(lt).
  return cr, cg, cb, log_t


@numba.njit(nogil=True, cache=True)
def forward_kernel(
    vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
    coarse, rgb_out, log_t_out,
):  # fmt: skip
  """rgb_out [N, 3] premultiplied colour, log_t_out [N] log transmittance.

  vol [Z * Y * X, 4] packed volume; shape (Z, Y, X); table
  [bins_y * bins_x, 8] (P, V) (preintegration.segment_table, flat); bins
  (bins_y, bins_x); origins, directions [N, 3] (N = H * W, row-major
  pixels); phase [N]; occ [Bz * By * Bx] uint8; nb (Bz, By, Bx); fp, ip:
  direct_kernels' parameters; coarse: blocks per coarse block edge (an
  empty coarse block is crossed at once; 1: none)."""
  lanes = tiles(ip)[1]
  sat = occupancy(table, bins[1])
  cocc, c_nb = coarse_occupancy(occ, nb, coarse)
  # cmap[b] = b // coarse for every block index b; cmap[-1] = coarse.
  cmap = np.empty(max(nb[0], max(nb[1], nb[2])) + 1, np.int64)
  for b in range(cmap.size - 1):
    cmap[b] = b // coarse
  cmap[-1] = coarse
  scratch = (
      np.zeros((lanes, 3, 5)),  # ends: u, v, du, d, s (native_segment_plan).
      np.zeros((lanes, 3, 4)),  # corner: flat lower corner, fz, fy, fx.
      np.zeros((lanes, 3, 3)),  # grads: the trilinear gradient (z, y, x).
      np.zeros((lanes, 3), np.bool_),  # have: the end's v, d, s are sampled.
      np.zeros((lanes, NUM_POINTS, 4)),
      np.zeros((lanes, NUM_PIECES)),
      np.zeros((lanes, 2)),
      np.zeros((lanes, NUM_PIECES + 1, 4)),
      np.empty((lanes, 9)),
  )
  _lanes(
      vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
      sat, cocc, c_nb, cmap, *scratch, rgb_out, log_t_out,
  )  # fmt: skip


@numba.njit(parallel=True, nogil=True, cache=True)
def _lanes(
    vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
    sat, cocc, c_nb, cmap, ends, corner, grads, have, points, lengths, taus,
    e, frame, rgb_out, log_t_out,
):  # fmt: skip
  """forward_kernel's parallel march: lane l marches its tiles with the
  scratch rows [l] of ends ... frame (``_march_ray``'s). Every array is
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
  ends, corner, grads = borrowed(ends), borrowed(corner), borrowed(grads)
  have, points, lengths = borrowed(have), borrowed(points), borrowed(lengths)
  taus, e, frame = borrowed(taus), borrowed(e), borrowed(frame)
  rgb_out, log_t_out = borrowed(rgb_out), borrowed(log_t_out)
  n_tiles, lanes, tiles_x = tiles(ip)
  w = ip[WIDTH]
  for lane in numba.prange(lanes):
    scratch = (
        ends[lane], corner[lane], grads[lane], have[lane], points[lane],
        lengths[lane], taus[lane], e[lane], frame[lane],
    )  # fmt: skip
    for job in range(lane, n_tiles, lanes):  # Tiles spread over the lanes.
      r0, r1, c0, c1 = tile_pixels(job, tiles_x, ip)
      for r in range(r0, r1):
        for c in range(c0, c1):
          p = r * w + c
          cr, cg, cb, log_t = _march_ray(
              vol, shape, table, bins, origins[p], directions[p], phase[p],
              occ, nb, fp, ip, sat, coarse_occ, scratch,
          )  # fmt: skip
          rgb_out[p, 0] = cr
          rgb_out[p, 1] = cg
          rgb_out[p, 2] = cb
          log_t_out[p] = log_t
