"""The point-sampled ray cache's build on CPU as native code: the twin of
``native_cache_build`` (the pre-integrated one) for the default
classification.

``ray_cache.build_ray_cache`` stores, per ray and sample i (the midpoint
of segment i of the view's depth grid, ``sampling.segment_span``; rows
past the box exit too, as the XLA build: their segments have length 0 and
add nothing), the TF lookup coordinates of ``sampling.tf_coords`` (flat
lower-left bin idx, quantised fractions fx, fy) and with shading the
quantised headlight terms (``compositing.headlight_terms``, or with
settings.tensor_normals ``tensor_headlight_terms``), in the narrow tiles
the native cached march walks (``native_layout``). The XLA build
(``cache_sampling``) samples chunks of rows of wide tiles with gathers
and regroups them: ~1.3 s of a 1.45 s build per new view of Cranium
256^2 on 2 cores was its sampling program. Here numba walks each ray once
with the direct marches' sampling code (``segment_sampling.sample_regs``
/ ``_shade_values``: the same trilinear HU and gradient, gradient norm and
headlight terms as the pre-integrated build) and writes each row straight
into its narrow tile's column of the pool, prefetching the next sample's
voxels.

Float64 arithmetic (the XLA build's is float32): fractions and headlight
terms agree to a step of their uint16 rounding, and a sample within float32
rounding of a bin edge may take the neighbouring bin with fraction ~0 or ~1
(the same bilinear lookup either way) (tests/test_native_point_build.py).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rlhf_tf.render import cached_native, native_cache_build, pool_pages
from rlhf_tf.render.direct_kernels import _ray, _segment, STEP
from rlhf_tf.render.native_borrow import borrowed
from rlhf_tf.render.native_cache import kernel
from rlhf_tf.render.native_cache_build import _FAST, _quantise
from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_trilinear import prefetch_corners
from rlhf_tf.render.segment_sampling import (
    _shade_values,
    locate,
    sample_consts,
    sample_located,
)


@numba.njit(**HELPER)
def _bin(c, n):
  """(bin, fraction) of sampling.tf_coords on n bins from c = clip(v n -
  1/2, 0, n - 1)."""
  i = min(max(math.floor(c), 0.0), n - 2.0)
  return int(i), c - i


@numba.njit(**HELPER)
def _store(pool, shade, shaded, row, col, u, v, diffuse, spec, bins_x):
  """Writes sample (u = clip(x, 0, 1) bins_x, v of preintegration.coords,
  headlight terms) into row, col of idx, fx, fy (and diffuse, specular)."""
  ix, fx = _bin(min(max(u - 0.5, 0.0), bins_x - 1.0), bins_x)
  iy, fy = _bin(v, pool[3])
  pool[0][row, col] = iy * bins_x + ix
  pool[1][row, col] = _quantise(fx)
  pool[2][row, col] = _quantise(fy)
  if shaded:
    shade[0][row, col] = _quantise(diffuse)
    shade[1][row, col] = _quantise(spec)


@kernel(nogil=True, **_FAST)
def _ray_rows(vol, shape, o, d, phase, fp, ip, bins, idx, fx, fy, diffuse,
              specular, r0, rows, col, frame):  # fmt: skip
  """Rows r0 .. r0 + rows - 1 of pool column col: one ray's samples
  (module docstring; a function of its own, not inlined into the parallel
  kernel: numba compiles the two several times faster)."""
  vol, shape, d, fp, ip = (
      borrowed(vol),
      borrowed(shape),
      borrowed(d),
      borrowed(fp),
      borrowed(ip),
  )
  frame = borrowed(frame)
  by, bx = bins[0], bins[1]
  pool = (borrowed(idx), borrowed(fx), borrowed(fy), float(by))
  shade = (borrowed(diffuse), borrowed(specular))
  shaded = shade[0].shape[0] > 0
  step = fp[STEP]
  k = sample_consts(shape, fp, bx)
  base_t, start, end = _ray(o, d, fp, phase, frame)
  fr = (frame[0], frame[1], frame[2], frame[3], frame[4], frame[5])
  at = locate(k, fr, base_t + _segment(0, start, end, step)[1])
  for i in range(rows):
    # The next sample's voxels asked for while this one is sampled.
    nxt = locate(k, fr, base_t + _segment(i + 1, start, end, step)[1])
    prefetch_corners(vol, nxt[3], *k[7])
    (u, _), corner, g = sample_located(vol, k, fr, at)
    v, dif, spec = _shade_values(vol, shape, d, fp, ip, by, corner, g)
    _store(pool, shade, shaded, r0 + i, col, u, v, dif, spec, bx)
    at = nxt


@kernel(parallel=True, nogil=True, **_FAST)
def build_kernel(vol, shape, origins, directions, phase, pixels, first_row,
                 num_rows, fp, ip, bins, idx, fx, fy, diffuse, specular,
                 workers):  # fmt: skip
  """Fills the pool fields idx [N, GROUP] int32, fx, fy [N, GROUP] uint16
  (and diffuse, specular [N, GROUP] uint16, or [0, GROUP] when unshaded)
  of the narrow tiles' rays; arguments as native_cache_build.build_kernel's
  (worker w takes tiles w, w + workers, ...)."""
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
                  bins, idx, fx, fy, diffuse, specular, first_row[t],
                  num_rows[t], m, frame)  # fmt: skip


def sample_pool(
    packed,
    origins,
    directions,
    phase,
    pixels,
    where,
    pool_shape,
    spacing,
    axes,
    bins,
    settings,
    image_size,
) -> dict:
  """{field: [N, GROUP] numpy} the point-sampled pool of a view: idx
  (int32), fx, fy and with shading diffuse, specular (uint16); rows
  outside the tiles and padding columns are 0. Arguments as
  native_cache_build.sample_pool's (settings without preintegrate)."""
  inputs = native_cache_build.kernel_inputs(
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
  pool = {
      'idx': pool_pages.zeros(pool_shape, np.int32),
      'fx': pool_pages.zeros(pool_shape, np.uint16),
      'fy': pool_pages.zeros(pool_shape, np.uint16),
  }
  rows = pool_shape[0] if settings.shading else 0
  shade = {
      k: pool_pages.zeros((rows, pool_shape[1]), np.uint16)
      for k in ('diffuse', 'specular')
  }
  with cached_native.LOCK:
    build_kernel(
        *inputs,
        pool['idx'],
        pool['fx'],
        pool['fy'],
        shade['diffuse'],
        shade['specular'],
        numba.get_num_threads(),
    )
  if settings.shading:
    pool.update(shade)
  # One spare pool's pages at most, idle until the next build.
  pool_pages.trim(sum(x.nbytes for x in pool.values()))
  return pool
