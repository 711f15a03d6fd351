"""Numba kernels of the native direct renderer (rlhf_tf.render.direct_native).

One ray at a time, in float64 whatever the input dtype, with the optics of
``raymarch.sample_rays`` + ``sampling.bilinear_lookup`` +
``raymarch.shade_and_composite`` (point sampling; equations in
``rlhf_tf.render.raymarch``'s docstring):

- segment i of a ray is [i step, (i + 1) step] past the ray's last depth-grid
  point before the box entry (``sampling.grid_start``), cut to the box; its
  sample sits at its midpoint;
- trilinear HU and gradient with clamp-to-edge corners
  (``sampling.trilinear``), |g| = ``safe_math.floored_norm``;
- bilinear post-classification (``sampling.tf_coords``), headlight shading
  (``compositing.headlight_terms`` / ``compositing.shade``), opacity
  correction (``compositing.opacity_log_transmittance``), front-to-back
  compositing;
- a sample whose empty-space block (``empty_space.occupancy``, not dilated:
  the block ranges' halo already covers a sample's footprint) is empty is
  skipped, and so is every later sample up to the one nearest where the ray
  leaves that block (all of them lie in it: a block is convex);
- a sample whose HU falls between two TF columns with alpha 0 in every row
  is transparent whatever its gradient: the forward skips the gradient's
  loads (exact);
- a ray stops once its transmittance is below the threshold.

The adjoint (``direct_adjoint_kernels``) walks each ray again over exactly
the samples the forward composited (the same code decides; the forward
returns each ray's sample count), so the gradient is exact for the rendered
(skipped, terminated) function. Rays go in square tiles of TILE x TILE
pixels, one task per tile.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_inline import HELPER

TILE = 8  # Pixels per tile edge: neighbouring rays share cache lines.
LANES = 64  # Parallel tasks of the forward, each a spread set of tiles.

# Float parameters (fp, float64).
STEP, REF, KA, KD, KS, SHININESS, NORMAL_EPS = 0, 1, 2, 3, 4, 5, 6
HU_MIN, HU_RANGE, GRAD_MAX, ONE_MINUS_EPS, THRESHOLD = 7, 8, 9, 10, 11
LO, HI, SPACING = 12, 15, 18  # 3 each.
INV_STEP, INV_BLOCK = 21, 22
MIN_DEN = 23  # safe_math.safe_div's threshold (pre-integration's extremum).
NUM_FLOAT = 24
# Integer parameters (ip, int64).
NUM, BLOCK, SKIP, SHADING, INT_POWER, HEIGHT, WIDTH = 0, 1, 2, 3, 4, 5, 6
TENSOR = 7  # Shading from the structure tensor (pre-integrated march only).
NUM_INT = 8


@numba.njit(**HELPER)
def tiles(ip):
  """(TILE x TILE pixel tiles of the image, parallel lanes, tiles per
  image row)."""
  tiles_x = -(-ip[WIDTH] // TILE)
  n_tiles = -(-ip[HEIGHT] // TILE) * tiles_x
  return n_tiles, min(LANES, n_tiles), tiles_x


@numba.njit(**HELPER)
def tile_pixels(job, tiles_x, ip):
  """(first row, row past the last, first column, column past the last)
  of tile job."""
  r0 = (job // tiles_x) * TILE
  c0 = (job % tiles_x) * TILE
  return r0, min(r0 + TILE, ip[HEIGHT]), c0, min(c0 + TILE, ip[WIDTH])


@numba.njit(**HELPER)
def _ray(o, d, fp, phase, frame):
  """(t0 - start, start, end) of a ray: its last grid point before the box
  entry and its chord [start, end] past that point (end = 0 on a miss).
  Fills frame [9]: the origin and direction in voxel units and the
  direction's reciprocals (inf where 0)."""
  t_near, t_far = -np.inf, np.inf
  for a in range(3):
    da = d[a] if abs(d[a]) >= 1e-20 else 1e-20  # intersect_box's tiny.
    t_lo = (fp[LO + a] - o[a]) / da
    t_hi = (fp[HI + a] - o[a]) / da
    t_near = max(t_near, min(t_lo, t_hi))
    t_far = min(t_far, max(t_lo, t_hi))
    frame[a] = o[a] / fp[SPACING + a]
    frame[3 + a] = d[a] / fp[SPACING + a]
    frame[6 + a] = 1.0 / frame[3 + a] if frame[3 + a] != 0.0 else np.inf
  t0 = max(t_near, 0.0)
  step = fp[STEP]
  k = math.floor(t0 / step - phase)
  start = min(max(t0 - (k + phase) * step, 0.0), step)
  end = start + max(t_far - t0, 0.0) if t_far > t0 else 0.0
  return t0 - start, start, end


@numba.njit(**HELPER)
def _segment(i, start, end, step):
  """(length, midpoint) of segment i of the chord [start, end]."""
  lo = max(start, i * step)
  hi = min(end, (i + 1) * step)
  return max(hi - lo, 0.0), 0.5 * (lo + hi)


@numba.njit(**HELPER)
def _axis(c, n):
  """(lower corner, fraction) of a clamp-to-edge trilinear axis of n."""
  c = min(max(c, 0.0), n - 1.0)
  i = min(max(math.floor(c), 0.0), max(n - 2.0, 0.0))
  return int(i), c - i


@numba.njit(**HELPER)
def _block(cz, cy, cx, nb, inv_block):
  """(bz, by, bx) empty-space block of voxel coords (clamped, as
  empty_space.occupied_at)."""
  bz = min(max(int(math.floor(cz * inv_block)), 0), nb[0] - 1)
  by = min(max(int(math.floor(cy * inv_block)), 0), nb[1] - 1)
  bx = min(max(int(math.floor(cx * inv_block)), 0), nb[2] - 1)
  return bz, by, bx


@numba.njit(**HELPER)
def _block_exit(b, frame, nb, block):
  """Ray parameter where the ray leaves block b (blocks at the volume's
  faces reach to infinity, as occupied_at clamps)."""
  t_exit = np.inf
  for a in range(3):
    if frame[3 + a] > 0.0 and b[a] < nb[a] - 1:
      t_exit = min(t_exit, ((b[a] + 1) * block - frame[a]) * frame[6 + a])
    elif frame[3 + a] < 0.0 and b[a] > 0:
      t_exit = min(t_exit, (b[a] * block - frame[a]) * frame[6 + a])
  return t_exit


@numba.njit(**HELPER)
def _opacity(alpha, seg, fp):
  """alpha' = 1 - (1 - min(alpha, 1 - eps))^(seg / ref) (opacity
  correction; alpha' = alpha for a whole reference step: no log / exp)."""
  a = min(alpha, fp[ONE_MINUS_EPS])
  s = seg / fp[REF]
  if abs(s - 1.0) <= 1e-12:
    return a
  return -math.expm1(s * math.log1p(-a))


@numba.njit(**HELPER)
def _trilinear(vol, base, sz, sy, sx, fz, fy, fx, ch):
  """Channel ch at lower corner base of vol [voxels, 4], nested lerps."""
  x0 = vol[base, ch] + fx * (vol[base + sx, ch] - vol[base, ch])
  b = base + sy
  x1 = vol[b, ch] + fx * (vol[b + sx, ch] - vol[b, ch])
  b = base + sz
  x2 = vol[b, ch] + fx * (vol[b + sx, ch] - vol[b, ch])
  b = base + sz + sy
  x3 = vol[b, ch] + fx * (vol[b + sx, ch] - vol[b, ch])
  y0 = x0 + fy * (x1 - x0)
  y1 = x2 + fy * (x3 - x2)
  return y0 + fz * (y1 - y0)


@numba.njit(**HELPER)
def _lookup(table, k, bins_x, wx, wy, c):
  """Channel c of the bilinear TF lookup at flat bin k (lower left)."""
  bottom = table[k, c] + wx * (table[k + 1, c] - table[k, c])
  kk = k + bins_x
  top = table[kk, c] + wx * (table[kk + 1, c] - table[kk, c])
  return bottom + wy * (top - bottom)


@numba.njit(**HELPER)
def _tf_axis(v, n):
  """(bin, fraction, d fraction / d v) of sampling.tf_coords on n bins."""
  u = v * n - 0.5
  du = float(n) if 0.0 < u < n - 1.0 else 0.0
  u = min(max(u, 0.0), n - 1.0)
  i = min(max(math.floor(u), 0.0), n - 2.0)
  return int(i), u - i, du


@numba.njit(**HELPER)
def _normal_scale(sq, norm, eps2):
  """sqrt(max(|g|^2, eps^2)) (compositing.safe_normalize) from |g|^2 and
  norm = sqrt(max(|g|^2, 1e-24)) (one square root for both)."""
  if sq > eps2 and sq >= 1e-24:
    return norm
  return math.sqrt(max(sq, eps2))


@numba.njit(**HELPER)
def _power(x, p, int_power):
  """x^p (integral p by squaring: no powf call)."""
  if int_power < 0:
    return x**p
  out, base, n = 1.0, x, int_power
  while n > 0:
    if n & 1:
      out *= base
    base *= base
    n >>= 1
  return out


@numba.njit(**HELPER)
def _corner(cz, cy, cx, shape):
  """(flat lower corner, strides sz, sy, sx, fractions fz, fy, fx)."""
  iz, fz = _axis(cz, shape[0])
  iy, fy = _axis(cy, shape[1])
  ix, fx = _axis(cx, shape[2])
  base = (iz * shape[1] + iy) * shape[2] + ix
  sx = 1 if shape[2] > 1 else 0
  sy = shape[2] if shape[1] > 1 else 0
  sz = shape[1] * shape[2] if shape[0] > 1 else 0
  return base, sz, sy, sx, fz, fy, fx


@numba.njit(**HELPER)
def _visit(i, base_t, start, end, frame, occ, nb, fp, ip, exit_t, occupied):
  """(next sample, sample i is in an empty block, segment length, voxel
  coords z, y, x of sample i, and the block state (exit_t, occupied)).

  The state is the ray parameter where the ray leaves the block of the last
  sample looked up, and that block's occupancy: a later sample before
  exit_t lies in the same block (blocks are convex, t grows), so only a
  sample past it looks its block up. From an empty block the march jumps to
  the first sample past exit_t: the samples in between lie in the block (up
  to rounding, which the block ranges' halo's margin covers:
  empty_space.ROUNDING_MARGIN)."""
  step = fp[STEP]
  seg, mid = _segment(i, start, end, step)
  t = base_t + mid
  cz = frame[0] + t * frame[3]
  cy = frame[1] + t * frame[4]
  cx = frame[2] + t * frame[5]
  if not ip[SKIP]:
    return i + 1, False, seg, cz, cy, cx, exit_t, occupied
  if t >= exit_t:
    b = _block(cz, cy, cx, nb, fp[INV_BLOCK])
    occupied = occ[(b[0] * nb[1] + b[1]) * nb[2] + b[2]] != 0
    exit_t = _block_exit(b, frame, nb, ip[BLOCK])
  if occupied:
    return i + 1, False, seg, cz, cy, cx, exit_t, occupied
  # The first sample whose midpoint (i + 1/2) step is past exit_t.
  x = min((exit_t - base_t) * fp[INV_STEP] + 0.5, 2.0**30)
  return max(i + 1, int(math.floor(x))), True, seg, cz, cy, cx, exit_t, occupied


@kernel(parallel=True, nogil=True)
def forward_kernel(
    vol, shape, table, bins, origins, directions, phase, occ, nb, fp, ip,
    rgb_out, log_t_out, steps_out,
):  # fmt: skip
  """rgb_out [N, 3] premultiplied colour, log_t_out [N] log transmittance,
  steps_out [N] int32: the index past the last sample the ray reached.

  vol [Z * Y * X, 4] packed volume; shape (Z, Y, X); table
  [bins_y * bins_x, 4]; bins (bins_y, bins_x); origins, directions [N, 3]
  (N = H * W, row-major pixels); phase [N]; occ [Bz * By * Bx] uint8;
  nb (Bz, By, Bx); fp, ip: the parameters (module constants)."""
  w = ip[WIDTH]
  n_tiles, lanes, tiles_x = tiles(ip)
  step, num, shading = fp[STEP], ip[NUM], ip[SHADING]
  by, bx = bins[0], bins[1]
  eps2 = fp[NORMAL_EPS] * fp[NORMAL_EPS]
  inv_hu, inv_grad = 1.0 / fp[HU_RANGE], 1.0 / fp[GRAD_MAX]
  # clear[ix]: TF columns ix and ix + 1 have alpha 0 in every row.
  clear = np.ones(bx, np.bool_)
  for k in range(by * bx):
    if table[k, 3] != 0.0:
      clear[k % bx] = False
      if k % bx > 0:
        clear[k % bx - 1] = False
  for lane in numba.prange(lanes):
    frame = np.empty(9)
    for job in range(lane, n_tiles, lanes):  # Tiles spread over the lanes.
      r0, r1, c0, c1 = tile_pixels(job, tiles_x, ip)
      for r in range(r0, r1):
        for c in range(c0, c1):
          p = r * w + c
          d = directions[p]
          base_t, start, end = _ray(origins[p], d, fp, phase[p], frame)
          trans = 1.0
          cr, cg, cb = 0.0, 0.0, 0.0
          i = 0
          exit_t, occupied = -np.inf, True
          while i < num and i * step < end and trans >= fp[THRESHOLD]:
            i, empty, seg, cz, cy, cx, exit_t, occupied = _visit(
                i, base_t, start, end, frame, occ, nb, fp, ip, exit_t, occupied
            )
            if empty:
              continue
            base, sz, sy, sx, fz, fy, fx = _corner(cz, cy, cx, shape)
            hu = _trilinear(vol, base, sz, sy, sx, fz, fy, fx, 0)
            ix, wx, _ = _tf_axis((hu - fp[HU_MIN]) * inv_hu, bx)
            if clear[ix]:
              continue  # alpha = 0 whatever |g| (exact): no gradient loads.
            gz = _trilinear(vol, base, sz, sy, sx, fz, fy, fx, 1)
            gy = _trilinear(vol, base, sz, sy, sx, fz, fy, fx, 2)
            gx = _trilinear(vol, base, sz, sy, sx, fz, fy, fx, 3)
            sq = gz * gz + gy * gy + gx * gx
            norm = math.sqrt(max(sq, 1e-24))
            iy, wy, _ = _tf_axis(norm * inv_grad, by)
            k = iy * bx + ix
            alpha = _lookup(table, k, bx, wx, wy, 3)
            if alpha == 0.0:
              continue  # Transparent: adds nothing (exact).
            weight = trans * _opacity(alpha, seg, fp)
            lit, gloss = 1.0, 0.0
            if shading:
              # n . l with n = g / max(|g|, eps): norm is max(|g|, 1e-12).
              cos = (gz * d[0] + gy * d[1] + gx * d[2]) / _normal_scale(
                  sq, norm, eps2
              )
              ndl = min(abs(cos), 1.0)
              lit = fp[KA] + fp[KD] * ndl
              gloss = fp[KS] * _power(
                  max(ndl, 1e-12), fp[SHININESS], ip[INT_POWER]
              )
            col = _lookup(table, k, bx, wx, wy, 0)
            cr += weight * (min(col * lit + gloss, 1.0) if shading else col)
            col = _lookup(table, k, bx, wx, wy, 1)
            cg += weight * (min(col * lit + gloss, 1.0) if shading else col)
            col = _lookup(table, k, bx, wx, wy, 2)
            cb += weight * (min(col * lit + gloss, 1.0) if shading else col)
            trans -= weight  # T_{i+1} = T_i (1 - alpha').
          rgb_out[p, 0] = cr
          rgb_out[p, 1] = cg
          rgb_out[p, 2] = cb
          log_t_out[p] = np.log(trans)
          steps_out[p] = min(i, num)
