"""The pre-integrated direct renderer on CPU as native code.

The twin of ``rlhf_tf.render.direct_native`` for settings.preintegrate
(with or without shading, with or without settings.tensor_normals): the
same rays, per-ray empty-space skipping and early ray termination, and per
segment the pre-integrated classification of the XLA march
(``raymarch._render``: ``ray_samples.sample_rays`` +
``preintegration.classify``), compiled by numba
(``rlhf_tf.render.direct_segment_kernels``; a segment's split and optics
are ``native_segment_regs``', shared with the pre-integrated cached
forward) and run through ``jax.experimental.buffer_callback`` without a
copy of the volume.

Differences to the XLA march: skipping and termination per ray (pixels
within 2.0005 x settings.empty_space_tolerance + settings.
termination_transmittance of the unskipped, unterminated march, as the XLA
march's tiles), float64 arithmetic (float32 images differ by float32
rounding); without skipping and termination the same image to float64
rounding (tests/test_direct_native_segments.py).

Gradients: nothing in the project differentiates the direct renderer (the
scenes, probes and agent go through the ray cache; the turntable and
benchmarks render forward), so there is no hand-written adjoint: the
custom VJP is that of the XLA march (``xla_render``), which is the
gradient of this image up to skipping and termination (the XLA march's
own, tile by tile, within the same bounds).
"""

from __future__ import annotations

import jax
from jax.experimental import buffer_callback
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import (
    direct_kernels,
    direct_native,
    direct_segment_kernels,
    native_segment_forward,
    preintegration,
)


def march(
    spec, vol, table, origins, directions, phase, occ,
    coarse=direct_segment_kernels.COARSE,
):  # fmt: skip
  """(premultiplied rgb [N, 3], log transmittance [N]) of the N = H * W
  row-major pixels' rays.

  Args:
    spec: direct_native.MarchSpec (bins: the TF table's).
    vol: [Z * Y * X, 4] packed volume (sampling.pack_volume), flat.
    table: [bins_y * bins_x, 8] (P, V) table (preintegration.segment_table),
      flat, same dtype.
    origins, directions: [N, 3] rays (camera.generate_rays).
    phase: [N] depth-grid phases (sampling.pixel_phase).
    occ: [Bz * By * Bx] uint8 empty-space occupancy (0 = skip).
    coarse: blocks per edge of the coarse empty-space blocks, crossed at
      once where all their blocks are empty (1: none).
  """
  n = origins.shape[0]
  dtype = table.dtype
  shape, bins, blocks, fp, ip = (
      np.asarray(spec.shape, np.int64),
      np.asarray(spec.bins, np.int64),
      np.asarray(spec.blocks, np.int64),
      np.asarray(spec.floats, np.float64),
      np.asarray(spec.ints, np.int64),
  )

  # Unshaded: the march compiled without the shading code (float64: one
  # march for both, native_segment_forward.lit_flag).
  lit = native_segment_forward.lit_flag(ip[direct_kernels.SHADING], dtype)

  def run(ctx, out, *args):
    del ctx
    v, t, o, d, p, b = [np.asarray(a) for a in args]
    with direct_native.LOCK:
      direct_segment_kernels.forward_kernel(
          v, shape, t, bins, o, d, p, b, blocks, fp, ip, coarse,
          *[np.asarray(a) for a in out], lit,
      )  # fmt: skip

  return buffer_callback.buffer_callback(
      run,
      (
          jax.ShapeDtypeStruct((n, 3), dtype),
          jax.ShapeDtypeStruct((n,), dtype),
      ),
      vmap_method='sequential',
  )(vol, table, origins, directions, phase, occ)


def _image(packed, spacing, axes, tf_table, camera, settings, ranges):
  spec, origins, directions, phase, occ = direct_native.march_inputs(
      packed, spacing, axes, tf_table, camera, settings, ranges
  )
  dtype = origins.dtype
  table = preintegration.segment_table(
      tf_table.astype(dtype), settings.reference_step_mm
  )
  rgb, log_t = march(
      spec,
      packed.reshape(-1, 4).astype(dtype),
      table.reshape(-1, 8),
      origins,
      directions,
      phase,
      occ,
  )
  return direct_native.image(spec, rgb, log_t, settings)


def render(
    packed, spacing, axes, tf_table, camera, settings, ranges, xla_render
):
  """[H, W, 4] RGBA: raymarch._render's contract with settings.preintegrate,
  marched natively (module docstring).

  Args:
    packed: [Z, Y, X, 4] packed volume; spacing (3,) mm; axes: JHAxes.
    tf_table: [bins_y, bins_x, 4] RGBA; camera: camera.Camera.
    settings: RenderSettings with preintegrate.
    ranges: empty_space.BlockRanges (used with settings.skip_empty_space).
    xla_render: (packed, tf_table, camera, ranges) -> the XLA march's image
      [H, W, 4]: the VJP (module docstring).
  """
  if not settings.preintegrate:
    raise ValueError('the native segment march pre-integrates')

  @jax.custom_vjp
  def image(packed, tf_table, camera, ranges):
    return _image(packed, spacing, axes, tf_table, camera, settings, ranges)

  def fwd(*args):
    return image(*args), args

  def bwd(args, ct):
    return jax.vjp(xla_render, *args)[1](jnp.asarray(ct))

  image.defvjp(fwd, bwd)
  return image(packed, tf_table, camera, ranges)
