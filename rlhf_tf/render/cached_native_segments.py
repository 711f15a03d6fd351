"""The pre-integrated cached march on CPU as native code.

The twin of ``rlhf_tf.render.cached_native`` for caches built with
``settings.preintegrate``: the formulas of ``rlhf_tf.render.cached_segments``
(the XLA march, kept for GPU / TPU and labels; each segment two halves
through its sampled midpoint, each split at a crest its ends' slopes
bracket: four pieces, ``preintegration.segment_plan``), per segment those
of ``native_segment_plan`` and per piece ``native_segment_math``, compiled
by numba (walkers: ``native_segment_forward``, ``native_segment_adjoint``)
and run through ``jax.experimental.buffer_callback`` without a copy of the
cache, with the same per-ray walk as the point-sampled native march:

- groups of rays (narrow tiles, ``native_layout``) dealt to one worker per
  thread in turn;
- early ray termination at settings.termination_transmittance (a pixel
  moves by less than it; 0: march to the end);
- a block of native_block_boxes.BLOCK segments of a ray is skipped
  without loading them when its (u, v) box, stored in the cache, holds no
  bin of non-zero extinction (exact, as the next);
- a segment is skipped before its split when no bin in a box around all
  its pieces could read has extinction
  (``native_segment_plan.surely_transparent``, 4 loads of a summed-area
  table of the TF's non-zero bins; exact: it adds nothing, whatever its
  colour; the forward reads each segment's box from the cache,
  ``native_segment_boxes``), and a piece of mean extinction exactly 0
  after 8 (the exact test after the split, ``transparent``, is left to
  the adjoint: it found ~2 % of the segments the first one let through on
  Cranium, and costs more than classifying them, which adds exactly 0
  too);
- a custom VJP w.r.t. the (P, V) table (``preintegration.segment_table``;
  JAX differentiates its construction from the TF) that re-walks each ray
  over exactly the segments the forward composited, with the hand-written
  reverse of every formula (``native_segment_plan.segment_adjoint``); a
  transparent segment's cotangent, linear in the ray's while it crosses
  transparent ones, is summed per ray and bin (``native_clear_adjoint``),
  and that of a block the TF leaves clear is scattered from weights stored
  in the cache (``native_clear_blocks``); under the gradient the forward
  records each classified segment's table reads for it
  (``native_segment_kept``);
- the walkers use their arrays through ``native_borrow.borrowed`` views:
  no atomic reference count per inlined helper call.

Tested against the XLA march (float64: ~1e-13) and finite differences in
tests/test_cached_native_segments.py. Cost: ``benchmarks/render.py
--preintegration-cost`` (figures in BUILD.md).
"""

from __future__ import annotations

import functools

import jax
from jax.experimental import buffer_callback
import jax.numpy as jnp
import numba
import numpy as np

from rlhf_tf.render import (
    cached_march,
    cached_native,
    native_segment_adjoint,
    native_segment_forward,
    native_segment_kept,
    preintegration,
)
from rlhf_tf.render.native_layout import GROUP

_FIELDS = ('u', 'v', 'du', 'u_mid', 'v_mid', 'du_mid')
_SHADE = ('diffuse', 'specular', 'diffuse_mid', 'specular_mid')


def _params(settings, dtype):
  return (
      dtype.type(settings.step_mm),
      float(settings.shading),
      float(settings.ambient),
      float(settings.diffuse),
      float(settings.specular),
      # safe_math.safe_div's default threshold in preintegration.extremum.
      float(np.finfo(dtype).eps) ** 2,
  )


def _boxes(tiles):
  """The tiles' block boxes (native_block_boxes), or [0, tile, 4]: none
  (a cache built without them: every block is walked)."""
  if tiles.box is None:
    return jnp.zeros((0, tiles.rows.shape[1], 4), jnp.uint16)
  return tiles.box


def _seg_boxes(tiles):
  """The tiles' segment boxes (native_segment_boxes), or [0, tile]: none
  (the forward computes each segment's)."""
  if tiles.seg_box is None:
    return jnp.zeros((0, tiles.rows.shape[1]), jnp.uint32)
  return tiles.seg_box


def _clear_blocks(tiles):
  """The tiles' clear blocks' weights (native_clear_blocks: span, keys,
  weights), or none (span [0, tile, 2]: every clear block is walked)."""
  if tiles.clear_span is None:
    return (
        jnp.zeros((0, tiles.rows.shape[1], 2), jnp.int32),
        jnp.zeros((0,), jnp.int32),
        jnp.zeros((0, 1), tiles.rows.dtype),
    )
  return tiles.clear_span, tiles.clear_key, tiles.clear_weight


def _inputs(tiles, dtype):
  """The kernels' common leading inputs (buffers): the pool fields
  (_FIELDS, then _SHADE or empty), start, length, first row."""
  if tiles.diffuse is None:
    empty = jnp.zeros((0, tiles.u.shape[1]), jnp.uint16)
    shade = (empty,) * 4
  else:
    shade = tuple(getattr(tiles, k) for k in _SHADE)
  return (
      *(getattr(tiles, k) for k in _FIELDS),
      *shade,
      tiles.start.astype(dtype),
      tiles.length.astype(dtype),
      tiles.first_chunk * cached_march.CHUNK,
  )


def _np(buffers):
  return [np.asarray(b) for b in buffers]


def march(tiles, table, settings, keep=False):
  """(C [T, tile, 3], log T_N [T, tile], segments composited [T, tile]
  int32) of a pre-integrated cache's tiles with a (P, V) table
  [bins_y, bins_x, 8]; keep: and the ticket [1] int32 of the classified
  segments' records for march_vjp (``native_segment_kept.take_arena``)."""
  dtype = table.dtype
  n_tiles, tile = tiles.pixels.shape
  by, bx = (np.int64(b) for b in table.shape[:2])
  params = _params(settings, dtype)
  threshold = float(settings.termination_transmittance)
  outputs = [
      jax.ShapeDtypeStruct((n_tiles, tile, 3), dtype),
      jax.ShapeDtypeStruct((n_tiles, tile), dtype),
      jax.ShapeDtypeStruct((n_tiles, tile), jnp.int32),
  ]
  if keep:
    # The records go to the reused arena; its ticket is the output.
    outputs.append(jax.ShapeDtypeStruct((1,), jnp.int32))

  def run(ctx, out, *args):
    del ctx
    args = _np(args)
    out = _np(out)
    with cached_native.LOCK:
      kept = None
      if keep:
        kept, out[3][0] = native_segment_kept.take_arena(
            native_segment_kept.capacity(n_tiles * tile),
            native_segment_kept.width(params[1] > 0),
            dtype,
            n_tiles * -(-tile // GROUP),
        )
      native_segment_forward.forward_kernel(
          tuple(args[:10]),
          args[-1],
          *args[10:-1],
          bx,
          by,
          params,
          threshold,
          cached_native.GROUP,
          numba.get_num_threads(),
          *out[:3],
          kept,
          native_segment_forward.lit_flag(params[1], dtype),
      )

  return buffer_callback.buffer_callback(
      run,
      tuple(outputs),
      vmap_method='sequential',
  )(
      *_inputs(tiles, dtype),
      tiles.num_steps,
      _boxes(tiles),
      table.reshape(-1, 8),
      _seg_boxes(tiles),
  )


def march_vjp(tiles, table, settings, steps, rgb, g_rgb, g_log_t, ticket=None):
  """The cotangent [bins_y * bins_x, 8] of the (P, V) table from the
  forward's outputs and the cotangents g_rgb [T, tile, 3], g_log_t
  [T, tile] of C and log T_N; ticket: march(keep=True)'s ticket of its
  records (None: the table is read again)."""
  dtype = table.dtype
  bins = table.shape[0] * table.shape[1]
  by, bx = (np.int64(b) for b in table.shape[:2])
  params = _params(settings, dtype)

  def run(ctx, out, *args):
    del ctx
    args = _np(args)
    with cached_native.LOCK:
      if ticket is None:
        kept = native_segment_kept.empty(dtype)
      else:
        kept = native_segment_kept.recall_arena(args[-2][0], dtype)
      native_segment_adjoint.adjoint_kernel(
          tuple(args[:10]),
          *args[10:15],
          args[-1],  # seg_box.
          *args[15:19],
          bx,
          by,
          params,
          *args[19:22],
          kept,
          cached_native.GROUP,
          np.asarray(out),
      )

  partial = buffer_callback.buffer_callback(
      run,
      jax.ShapeDtypeStruct((cached_native.NUM_BLOCKS, bins, 8), dtype),
      vmap_method='sequential',
  )(
      *_inputs(tiles, dtype),
      steps,
      _boxes(tiles),
      *_clear_blocks(tiles),
      table.reshape(-1, 8),
      rgb,
      g_rgb,
      g_log_t,
      *(() if ticket is None else (ticket,)),
      _seg_boxes(tiles),
  )
  return functools.reduce(
      jnp.add, [partial[b] for b in range(cached_native.NUM_BLOCKS)]
  )


def cached_image(cache, tf_table, settings):
  """[H*W, 4] RGBA of a pre-integrated cached view (cached_segments.
  cached_image's contract, with early ray termination), differentiable
  w.r.t. tf_table."""
  table = preintegration.segment_table(tf_table, settings.reference_step_mm)
  return table_image(cache, table, settings)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def table_image(cache, table, settings):
  """[H*W, 4] RGBA from a (P, V) table [bins_y, bins_x, 8]."""
  return _image(cache, table, settings, keep=False)[0]


def _image(cache, table, settings, keep):
  """(image, march's outputs); keep: with the records for march_vjp."""
  out = march(cache.tiles, table, settings, keep=keep)
  image, _, _ = cached_march.scatter_image(
      cache, out[0], out[1], None, None, settings, 0
  )
  return image, out


def _table_image_fwd(cache, table, settings):
  # Under the gradient: the classified segments' table reads kept for the
  # adjoint (native_segment_kept).
  image, (rgb, log_t, steps, ticket) = _image(cache, table, settings, True)
  return image, (cache, table, rgb, log_t, steps, ticket)


def _table_image_bwd(settings, residuals, ct):
  cache, table, rgb, log_t, steps, ticket = residuals
  g_rgb, g_log_t = cached_march.tiles_cotangent(
      cache.tiles, jnp.asarray(ct), log_t, settings.background
  )
  g_table = march_vjp(
      cache.tiles, table, settings, steps, rgb, g_rgb, g_log_t, ticket
  )
  return (
      jax.tree_util.tree_map(cached_march.zero_cotangent, cache),
      g_table.reshape(table.shape),
  )


table_image.defvjp(_table_image_fwd, _table_image_bwd)
