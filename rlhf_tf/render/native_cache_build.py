"""The pre-integrated ray cache's build on CPU as native code.

``ray_cache.build_ray_cache`` samples, per ray, every segment end and
every segment midpoint of the view's depth grid inside the volume box
(``ray_samples.sample_rays`` with settings.preintegrate) and stores u, v,
du (and with shading the quantised headlight terms d, s) of both in the
narrow tiles the native cached march walks (``native_layout``). The XLA
path (``cache_sampling``: for GPU / TPU, a mesh or labels) samples whole
chunks of rows of wide tiles and regroups them; on CPU that cost 3-4 s per
new view of Cranium 256^2 (the XLA sampling program: ~90 %, the regroup
most of the rest). Here numba walks each ray once, with the direct
pre-integrated march's own sampling code (``segment_sampling.sample_end``
/ ``shade_end``: the same trilinear HU, exact slope along the ray,
gradient norm and (tensor) headlight terms), and writes its rows
straight into its narrow tile's column of the pool:

- row i of a ray holds end i (the box entry for i = 0, then the depth-grid
  points, clamped to the box exit: ``sampling.segment_ends``) and the
  midpoint of segment i, from end i to end i + 1
  (``preintegration.sample_depths``);
- a segment's back end is the next one's front end: sampled once; rows past
  the exit repeat the exit's values without sampling (as the XLA build,
  whose ends collapse onto the exit there);
- narrow tiles are dealt to the workers in turn; a tile's 16 rays are
  mostly image neighbours (rays are sorted by sample count, stably, so
  equal counts keep row-major order) and its rows lie in one block of
  memory, so the volume's and the pool's cache lines are reused;
- the arrays the per-sample helpers take are borrowed views
  (``native_borrow``): numba's atomic reference counts of them took a
  third of the time (more with two threads sharing the counts);
- samples stay in registers with the per-sample constants computed once
  per ray (``segment_sampling.sample_consts`` / ``sample_regs``, as the
  direct march) and the next back end's voxels are prefetched while a
  segment is sampled: the whole build_ray_cache x 0.905 / 0.896 CPU
  shaded / unshaded than with float64 scratch rows (one thread, paired,
  9 reps; the same pool bit for bit).

Tried in session 15 and not kept (whole build, one thread, paired, 9
reps): no prefetch x 1.075; prefetching 2 segments ahead x ~1.00; a
tile's rays sampled 64 / 16 rows at a time, all 16 rays in turn (the pool
lines they share kept in the caches) x 1.03 / 1.06 (a ray's own run
through the volume counts more); the volume in transparent huge pages
x 1.02. perf (one thread, shaded): the kernel ~1.1 s user, spread thin
over trilinear loads, the gradient norm's division, the structure terms
and _power's loop; the pool's fresh page faults ~0.2 s of system time
(now reused: pool_pages).

Cost (Cranium 256^2, pre-integrated, tensor_normals, shaded, one view):
~1.5 s of CPU at load ~5.7 (the XLA build: ~6 s), so ~0.8 s on two idle
cores; the pool (~310 MB) is wrapped without a copy.

Float64 arithmetic (the XLA build's is float32): the fields agree to
float32 rounding of the sample positions (tests/test_native_cache_build.py).
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render import (
    cached_native,
    direct_native,
    native_layout,
    pool_pages,
)
from rlhf_tf.render.direct_kernels import _ray, SHADING, STEP
from rlhf_tf.render.native_borrow import borrowed
from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_trilinear import prefetch_corners
from rlhf_tf.render.segment_sampling import (
    _shade_values,
    locate,
    sample_consts,
    sample_regs,
)

# A sample's (u, v, du, d, s) (_sample).
_U, _V, _DU, _D, _S = 0, 1, 2, 3, 4
_FIXED = 65535.0  # cached_march.quantise's scale.
# Divisions without Python's zero check (a zero divisor gives inf / nan, as
# in XLA) and fused multiply-adds: ~10-15 % less time per sample (rounding
# differs from the XLA build's float64 by ~1 ulp, well inside float32).
_FAST = dict(error_model='numpy', fastmath={'contract'})


@numba.njit(**HELPER)
def _quantise(x):
  """cached_march.quantise of one value (round half to even)."""
  return np.uint16(np.rint(min(max(x, 0.0), 1.0) * _FIXED))


@numba.njit(**HELPER)
def _sample(vol, shape, d, fp, ip, k, frame, t, bins_y):
  """(u, v, du, d, s) at ray parameter t (k: sample_consts'; frame: the
  ray's origin and direction in voxel units, a tuple), in registers: one
  trilinear lookup of HU and gradient (segment_sampling.sample_regs) and
  its v and shading terms (_shade_values; d, s 0.0 unshaded)."""
  (u, du), at, g = sample_regs(vol, k, frame, t)
  v, diffuse, spec = _shade_values(vol, shape, d, fp, ip, bins_y, at, g)
  return u, v, du, diffuse, spec


@numba.njit(**HELPER)
def _store(u, v, du, d, s, shaded, row, col, x):
  """Writes x = (u, v, du, d, s) into row, col of the fields u, v, du and
  (shaded) the quantised d, s."""
  u[row, col] = x[_U]
  v[row, col] = x[_V]
  du[row, col] = x[_DU]
  if shaded:
    d[row, col] = _quantise(x[_D])
    s[row, col] = _quantise(x[_S])


@kernel(nogil=True, **_FAST)
def _ray_rows(vol, shape, o, d, phase, fp, ip, bins, pool, shade, r0, rows,
              col, frame):  # fmt: skip
  """Rows r0 .. r0 + rows - 1 of pool column col: one ray's ends and
  midpoints (module docstring). (A function of its own, not inlined into
  the parallel kernel: numba compiles the two several times faster.)"""
  # Views without reference counts (native_borrow): the inlined helpers
  # would count each array argument twice per sample, atomically.
  vol, shape, d, fp, ip = (
      borrowed(vol),
      borrowed(shape),
      borrowed(d),
      borrowed(fp),
      borrowed(ip),
  )
  frame = borrowed(frame)
  u, v, du = borrowed(pool[0]), borrowed(pool[1]), borrowed(pool[2])
  u_mid, v_mid, du_mid = borrowed(pool[3]), borrowed(pool[4]), borrowed(pool[5])
  sd, ss = borrowed(shade[0]), borrowed(shade[1])
  sd_mid, ss_mid = borrowed(shade[2]), borrowed(shade[3])
  shaded = sd.shape[0] > 0
  by = bins[0]
  step = fp[STEP]
  # The per-sample constants once per ray and the samples in registers (as
  # the direct march: LLVM cannot hoist loads of fp past stores into
  # float64 scratch arrays that might alias it).
  k = sample_consts(shape, fp, bins[1])
  base_t, start, end = _ray(o, d, fp, phase, frame)
  fr = (frame[0], frame[1], frame[2], frame[3], frame[4], frame[5])
  front = start  # End 0: the box entry (clamped grid point 0).
  f = _sample(vol, shape, d, fp, ip, k, fr, base_t + front, by)
  for i in range(rows):
    row = r0 + i
    _store(u, v, du, sd, ss, shaded, row, col, f)
    back = min(max((i + 1) * step, start), end)
    if back == front:  # Past the exit: nothing new to sample.
      _store(u_mid, v_mid, du_mid, sd_mid, ss_mid, shaded, row, col, f)
      continue
    # The next back end's voxels asked for while this segment is sampled.
    after = min(max((i + 2) * step, start), end)
    at = locate(k, fr, base_t + after)
    prefetch_corners(vol, at[3], *k[7])
    mid = front + 0.5 * (back - front)
    m = _sample(vol, shape, d, fp, ip, k, fr, base_t + mid, by)
    _store(u_mid, v_mid, du_mid, sd_mid, ss_mid, shaded, row, col, m)
    f = _sample(vol, shape, d, fp, ip, k, fr, base_t + back, by)
    front = back


@kernel(parallel=True, nogil=True, **_FAST)
def build_kernel(vol, shape, origins, directions, phase, pixels, first_row,
                 num_rows, fp, ip, bins, pool, shade, workers):  # fmt: skip
  """Fills the pool fields (u, v, du, u_mid, v_mid, du_mid: [N, GROUP]
  float32; shade: d, s, d_mid, s_mid [N, GROUP] uint16, or [0, GROUP] when
  unshaded) of the narrow tiles' rays.

  vol [Z * Y * X, 4] packed volume; shape (Z, Y, X); origins, directions
  [H * W, 3]; phase [H * W]; pixels [T, GROUP] each tile's rays (H * W:
  padding, left untouched); first_row, num_rows [T] the tile's pool rows;
  fp, ip: direct_kernels' parameters; bins (bins_y, bins_x); worker w
  takes tiles w, w + workers, ..."""
  n_tiles, group = pixels.shape
  n_pix = origins.shape[0]
  for wk in numba.prange(workers):
    frame = np.empty(9)  # direct_kernels._ray's.
    for t in range(wk, n_tiles, workers):
      for m in range(group):
        p = pixels[t, m]
        if p >= n_pix or num_rows[t] == 0:
          continue
        _ray_rows(vol, shape, origins[p], directions[p], phase[p], fp, ip,
                  bins, pool, shade, first_row[t], num_rows[t], m,
                  frame)  # fmt: skip


def _aligned_zeros(shape, dtype):
  """Zeros [shape] in fresh anonymous pages (mmap): page-aligned, so
  jax.device_put wraps them without a copy (XLA's CPU client copies an
  array that does not start on a 64-byte boundary: ~0.1 s per 300 MB
  pool), and without numpy's transparent-huge-page advice for large
  arrays: with the kernel's defrag=madvise, faulting huge pages in
  compacts memory, ~0.5-1 s per 300 MB pool on this machine (4 KiB pages:
  ~0.1 s), and whether a build paid it depended on what glibc had freed
  before (the 'compile per new view' of benchmarks/render.py). Pages of
  a dropped cache's pool are reused (pool_pages: no page faults)."""
  return pool_pages.zeros(shape, dtype)


def wanted(settings, narrow: bool, labels: bool, mesh_size: int) -> bool:
  """Whether build_ray_cache samples natively (here pre-integrated,
  point-sampled in ``native_point_build``): a cache in narrow tiles (CPU,
  native_layout.wanted), without labels or a mesh, and
  settings.native_march (False: the XLA build, as the direct march)."""
  return (
      narrow and not labels and mesh_size <= 1 and bool(settings.native_march)
  )


def kernel_inputs(
    packed,
    origins,
    directions,
    phase,
    pixels,
    where: native_layout.Plan,
    spacing,
    axes,
    bins,
    settings,
    image_size,
) -> tuple:
  """The build kernels' leading arguments (vol, shape, origins,
  directions, phase, pixels, first_row, num_rows, fp, ip, bins: this
  module's build_kernel and native_point_build's) from sample_pool's."""
  shape = tuple(int(n) for n in packed.shape[:3])
  # Parameters rounded to the rays' precision (float64 only with
  # jax_enable_x64), as the XLA build sees them.
  dtype = np.result_type(origins.dtype, np.float32)
  spec = direct_native.march_spec(
      shape, spacing, axes, bins, (1, 1, 1), 1, settings, dtype, *image_size
  )
  fp = np.asarray(spec.floats, np.float64)
  ip = np.asarray(spec.ints, np.int64)
  assert ip[SHADING] == int(bool(settings.shading))
  return (
      np.asarray(packed).reshape(-1, 4),
      np.asarray(shape, np.int64),
      # Rays copied to float64 whatever their dtype (exact; writable: one
      # compiled kernel).
      np.array(origins, np.float64),
      np.array(directions, np.float64),
      np.array(phase, np.float64),
      np.ascontiguousarray(pixels, np.int32),
      (where.first_chunk * native_layout.CHUNK).astype(np.int64),
      (where.num_chunks * native_layout.CHUNK).astype(np.int64),
      fp,
      ip,
      np.asarray(bins, np.int64),
  )


def sample_pool(
    packed,
    origins,
    directions,
    phase,
    pixels,
    where: native_layout.Plan,
    pool_shape,
    spacing,
    axes,
    bins,
    settings,
    image_size,
) -> dict:
  """{field: [N, GROUP] numpy} the pre-integrated pool of a view.

  Args:
    packed: [Z, Y, X, 4] packed volume (sampling.pack_volume), any float
      dtype (on the host: read without a copy).
    origins, directions: [H * W, 3] numpy rays (cache_sampling.chords);
      phase: [H * W] their depth-grid phases.
    pixels: [T, GROUP] int32 the narrow tiles' rays (H * W: padding).
    where: their rows in the pool (native_layout.plan).
    pool_shape: (N, GROUP) each field's shape.
    spacing: (3,) mm; axes: JHAxes; bins: (bins_y, bins_x).
    settings: RenderSettings with preintegrate (step_mm, shading,
      shininess, normal_eps, tensor_normals are used).
    image_size: (H, W).

  Returns:
    u, v, du, u_mid, v_mid, du_mid (float32) and with shading diffuse,
    specular, diffuse_mid, specular_mid (uint16); rows outside the tiles
    and padding columns are 0.
  """
  inputs = kernel_inputs(
      packed,
      origins,
      directions,
      phase,
      pixels,
      where,
      spacing,
      axes,
      bins,
      settings,
      image_size,
  )
  names = ('u', 'v', 'du', 'u_mid', 'v_mid', 'du_mid')
  pool = {k: _aligned_zeros(pool_shape, np.float32) for k in names}
  shade_names = ('diffuse', 'specular', 'diffuse_mid', 'specular_mid')
  rows = pool_shape[0] if settings.shading else 0
  shade = {
      k: _aligned_zeros((rows, pool_shape[1]), np.uint16) for k in shade_names
  }
  with cached_native.LOCK:
    build_kernel(
        *inputs,
        tuple(pool[k] for k in names),
        tuple(shade[k] for k in shade_names),
        numba.get_num_threads(),
    )
  if settings.shading:
    pool.update(shade)
  # One spare pool's pages at most, idle until the next build.
  pool_pages.trim(sum(x.nbytes for x in pool.values()))
  return pool
