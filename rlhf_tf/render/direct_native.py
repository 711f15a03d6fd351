"""The direct renderer on CPU as native code: per-ray empty-space skipping
and early ray termination.

The XLA direct renderer (``raymarch._render`` + ``direct_chunk``) marches
tiles of rays in chunks of samples: every ray of a tile pays for a chunk
while any of them needs it, a skipped group costs a chunk boundary, and a
sample costs ~68 ns of CPU. Here the same march is compiled by numba
(``rlhf_tf.render.direct_kernels``: same sample positions, trilinear HU and
gradient, bilinear post-classification, headlight shading, opacity
correction, front-to-back compositing) and run through
``jax.experimental.buffer_callback``, which hands the packed volume over
without a copy. Each ray walks on its own:

- it skips every sample in an empty-space block that
  ``empty_space.occupancy`` marks empty for the TF (the same blocks,
  threshold and bound as the XLA path: pixels differ from the unskipped
  march by at most 2.0005 x settings.empty_space_tolerance), jumping to
  where it leaves the block;
- it skips the colour of a sample whose four TF bins have alpha = 0
  (exact: alpha = 0 adds nothing);
- it stops once its transmittance is below
  settings.termination_transmittance (pixels differ by less than it).

Gradients (``march`` is a custom_vjp): the adjoint
(``direct_adjoint_kernels``) re-walks each ray over exactly the samples the
forward composited and gives the exact cotangents of the TF table and of
the packed volume (hence of the HU volume and its gradient) for the
rendered function. The camera gets none: rays, phases and the skipped
blocks are constants of the native march (no caller differentiates with
respect to the camera; the XLA path, for GPU / TPU, does almost
everywhere).

Differences to the XLA path besides skipping and termination: the native
march computes in float64 (the XLA one in the inputs' dtype), so float32
images differ by float32 rounding (~1e-6). Tested in
tests/test_direct_native.py.

Concurrency: numba's default threading layer must not be entered from two
threads at once, so the kernels run under native_lock.LOCK, the one lock all
native kernels share. The table cotangent is summed from NUM_BLOCKS partial
tables in a fixed order: results do not depend on the thread count.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
from jax.experimental import buffer_callback
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import (
    compositing,
    direct_adjoint_kernels,
    direct_kernels,
    empty_space,
    native_lock,
)
from rlhf_tf.render import sampling as sampling_lib

NUM_BLOCKS = 8  # Partial TF-table cotangents (task b: rays b, b + 8, ...).
# One numba call at a time, process-wide (native_lock).
LOCK = native_lock.LOCK


class MarchSpec(NamedTuple):
  """Static description of a native march (hashable)."""

  shape: tuple  # (Z, Y, X) voxels.
  bins: tuple  # (bins_y, bins_x) of the TF table.
  blocks: tuple  # (Bz, By, Bx) empty-space blocks.
  floats: tuple  # direct_kernels' float parameters.
  ints: tuple  # direct_kernels' integer parameters.


def march_spec(
    shape, spacing, axes, bins, blocks, block, settings, dtype, h, w
):
  """The MarchSpec of a render (see render)."""
  rnd = lambda v: float(np.asarray(v, dtype))  # Values as the XLA path sees.
  lo, hi = camera_lib.volume_box(shape, spacing)
  thr = float(settings.termination_transmittance)
  p = float(settings.shininess)
  fp = [0.0] * direct_kernels.NUM_FLOAT
  fp[direct_kernels.STEP] = rnd(settings.step_mm)
  fp[direct_kernels.INV_STEP] = 1.0 / fp[direct_kernels.STEP]
  fp[direct_kernels.INV_BLOCK] = 1.0 / int(block)
  fp[direct_kernels.REF] = rnd(settings.reference_step_mm)
  fp[direct_kernels.KA] = float(settings.ambient)
  fp[direct_kernels.KD] = float(settings.diffuse)
  fp[direct_kernels.KS] = float(settings.specular)
  fp[direct_kernels.SHININESS] = p
  fp[direct_kernels.NORMAL_EPS] = float(settings.normal_eps * axes.grad_max)
  fp[direct_kernels.HU_MIN] = float(axes.hu_min)
  fp[direct_kernels.HU_RANGE] = float(axes.hu_max - axes.hu_min)
  fp[direct_kernels.GRAD_MAX] = float(axes.grad_max)
  fp[direct_kernels.ONE_MINUS_EPS] = 1.0 - float(jnp.finfo(dtype).epsneg)
  fp[direct_kernels.THRESHOLD] = thr
  fp[direct_kernels.MIN_DEN] = float(jnp.finfo(dtype).eps) ** 2
  for a in range(3):
    fp[direct_kernels.LO + a] = rnd(lo[a])
    fp[direct_kernels.HI + a] = rnd(hi[a])
    fp[direct_kernels.SPACING + a] = rnd(spacing[a])
  ip = [0] * direct_kernels.NUM_INT
  ip[direct_kernels.NUM] = sampling_lib.num_samples(
      shape, spacing, settings.step_mm
  )
  ip[direct_kernels.BLOCK] = int(block)
  ip[direct_kernels.SKIP] = int(bool(settings.skip_empty_space))
  ip[direct_kernels.SHADING] = int(bool(settings.shading))
  ip[direct_kernels.INT_POWER] = int(p) if p.is_integer() and p >= 0 else -1
  ip[direct_kernels.HEIGHT], ip[direct_kernels.WIDTH] = int(h), int(w)
  ip[direct_kernels.TENSOR] = int(bool(settings.tensor_normals))
  return MarchSpec(
      tuple(int(n) for n in shape),
      tuple(int(n) for n in bins),
      tuple(int(n) for n in blocks),
      tuple(fp),
      tuple(ip),
  )


def _constants(spec: MarchSpec):
  return (
      np.asarray(spec.shape, np.int64),
      np.asarray(spec.bins, np.int64),
      np.asarray(spec.blocks, np.int64),
      np.asarray(spec.floats, np.float64),
      np.asarray(spec.ints, np.int64),
  )


def _kernel_args(spec, vol, table, origins, directions, phase, occ):
  """The kernels' leading arguments, from host buffers."""
  shape, bins, blocks, fp, ip = _constants(spec)
  return (
      vol,
      shape,
      table,
      bins,
      origins,
      directions,
      phase,
      occ,
      blocks,
      fp,
      ip,
  )


def _np(buffers):
  return [np.asarray(b) for b in buffers]


def _forward(spec, vol, table, origins, directions, phase, occ):
  n = origins.shape[0]
  dtype = table.dtype

  def run(ctx, out, *args):
    del ctx
    with LOCK:
      direct_kernels.forward_kernel(*_kernel_args(spec, *_np(args)), *_np(out))

  return buffer_callback.buffer_callback(
      run,
      (
          jax.ShapeDtypeStruct((n, 3), dtype),
          jax.ShapeDtypeStruct((n,), dtype),
          jax.ShapeDtypeStruct((n,), jnp.int32),
      ),
      vmap_method='sequential',
  )(vol, table, origins, directions, phase, occ)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def march(spec, vol, table, origins, directions, phase, occ):
  """(premultiplied rgb [N, 3], log transmittance [N]) of the N = H * W
  row-major pixels' rays.

  Args:
    spec: MarchSpec.
    vol: [Z * Y * X, 4] packed volume (sampling.pack_volume), flat.
    table: [bins_y * bins_x, 4] TF table, flat, same dtype.
    origins, directions: [N, 3] rays (camera.generate_rays).
    phase: [N] depth-grid phases (sampling.pixel_phase).
    occ: [Bz * By * Bx] uint8 empty-space occupancy (0 = skip).
  """
  rgb, log_t, _ = _forward(spec, vol, table, origins, directions, phase, occ)
  return rgb, log_t


def _march_fwd(spec, vol, table, origins, directions, phase, occ):
  rgb, log_t, steps = _forward(
      spec, vol, table, origins, directions, phase, occ
  )
  return (rgb, log_t), (vol, table, origins, directions, phase, occ, rgb, steps)


def _adjoint(kernel, out_shape, spec, residuals, g_rgb, g_log_t):
  def run(ctx, out, *args):
    del ctx
    args = _np(args)
    with LOCK:
      kernel(*_kernel_args(spec, *args[:6]), *args[6:], np.asarray(out))

  return buffer_callback.buffer_callback(
      run,
      jax.ShapeDtypeStruct(out_shape, residuals[1].dtype),
      vmap_method='sequential',
  )(*residuals[:6], residuals[7], residuals[6], g_rgb, g_log_t)


def _march_bwd(spec, residuals, cts):
  vol, table = residuals[0], residuals[1]
  g_rgb = jnp.asarray(cts[0], table.dtype)
  g_log_t = jnp.asarray(cts[1], table.dtype)
  partial = _adjoint(
      direct_adjoint_kernels.adjoint_table_kernel,
      (NUM_BLOCKS,) + table.shape,
      spec,
      residuals,
      g_rgb,
      g_log_t,
  )
  g_table = functools.reduce(jnp.add, [partial[b] for b in range(NUM_BLOCKS)])
  g_vol = _adjoint(
      direct_adjoint_kernels.adjoint_volume_kernel,
      vol.shape,
      spec,
      residuals,
      g_rgb,
      g_log_t,
  )
  origins, directions, phase = residuals[2:5]
  return (
      g_vol.astype(vol.dtype),
      g_table,
      jnp.zeros_like(origins),
      jnp.zeros_like(directions),
      jnp.zeros_like(phase),
      None,
  )


march.defvjp(_march_fwd, _march_bwd)


def march_inputs(packed, spacing, axes, tf_table, camera, settings, ranges):
  """(MarchSpec, origins [N, 3], directions [N, 3], phases [N], occupancy
  [Bz * By * Bx] uint8) of a render (see render), in the render's dtype."""
  shape = tuple(int(n) for n in packed.shape[:3])
  dtype = jnp.result_type(packed.dtype, tf_table.dtype)
  origins, directions = camera_lib.generate_rays(camera)
  h, w = origins.shape[:2]
  phase = sampling_lib.pixel_phase(jnp.arange(h * w), w, settings.jitter)
  if settings.skip_empty_space:
    num = sampling_lib.num_samples(shape, spacing, settings.step_mm)
    threshold = empty_space.skip_threshold(
        num,
        settings.step_mm,
        settings.reference_step_mm,
        settings.empty_space_tolerance,
    )
    occ = empty_space.occupancy(ranges, axes, tf_table[..., 3], threshold)
    block = ranges.block
  else:
    occ, block = jnp.ones((1, 1, 1), bool), 1
  spec = march_spec(
      shape,
      spacing,
      axes,
      tf_table.shape[:2],
      occ.shape,
      block,
      settings,
      dtype,
      h,
      w,
  )
  return (
      spec,
      origins.reshape(-1, 3).astype(dtype),
      directions.reshape(-1, 3).astype(dtype),
      phase.astype(dtype),
      occ.reshape(-1).astype(jnp.uint8),
  )


def image(spec, rgb, log_t, settings):
  """[H, W, 4] RGBA from a march's rgb [N, 3] and log_t [N]."""
  acc = 0.0 - jnp.expm1(log_t)  # +0 (not -0) where nothing is seen.
  out = compositing.over_background(rgb, acc, settings.background)
  h, w = spec.ints[direct_kernels.HEIGHT], spec.ints[direct_kernels.WIDTH]
  return out.reshape(h, w, 4)


def render(packed, spacing, axes, tf_table, camera, settings, ranges):
  """[H, W, 4] RGBA: raymarch._render's contract (point sampling), marched
  natively (module docstring). ranges: empty_space.BlockRanges (used with
  settings.skip_empty_space)."""
  if settings.preintegrate:
    raise ValueError('the native direct march point-samples')
  spec, origins, directions, phase, occ = march_inputs(
      packed, spacing, axes, tf_table, camera, settings, ranges
  )
  dtype = origins.dtype
  rgb, log_t = march(
      spec,
      packed.reshape(-1, 4).astype(dtype),
      tf_table.reshape(-1, 4).astype(dtype),
      origins,
      directions,
      phase,
      occ,
  )
  return image(spec, rgb, log_t, settings)
