"""The TF-independent fields a pre-integrated cache stores for the native
march to skip work, computed once when the cache is built.

Only a pre-integrated cache in narrow tiles (``native_layout``: the layout
the native CPU march walks) stores them; each is a function of the sampled
pool alone, not of the TF, so it is computed here once per view instead of
per re-render (what each saves: its module's docstring):

  box [N // BLOCK, tile, 4] uint16: per ray and block of BLOCK segments, the
      (u, v) bins they can read (``native_block_boxes``: the forward and
      adjoint skip blocks the TF leaves clear);
  seg_box [N, tile] uint32 or None: per segment, the bins it can read packed
      in bytes (``native_segment_boxes``: the forward skips single clear
      segments; None with tables over 256 x 256 bins);
  clear_span [N // BLOCK, tile, 2] int32, clear_key [E] int32,
  clear_weight [E, 3 or 1]: per block, the TF-independent cotangent
      weights the adjoint scatters when the TF leaves the block clear
      (``native_clear_blocks``; E is a capacity, not view-dependent).

N is the pool's rows, tile = native_layout.GROUP rays. The clear-block
weights read the block boxes: a cache whose fields change must rebuild
``box`` before them (each module's ``of_tiles``).

Cost (Cranium 256^2 shaded, one thread): ~0.09 s block boxes, ~0.08 s
segment boxes, ~0.37 s clear-block weights (perf: spread over the hash
lookups and float64 sums of its ~4.4M segments' pieces). Their cost is
arithmetic, not loads: all three in one pass, tile by tile while its rows
are in the caches, gave the whole build x 0.989 / 1.016 shaded /
unshaded (paired, 9 reps; not kept).
"""

from __future__ import annotations

import numpy as np

from rlhf_tf.render import native_clear_blocks, native_segment_boxes
from rlhf_tf.render.cache_sampling import CHUNK


def of_pool(pool, start, length, first_chunk, num_steps, step_mm, bins,
            zeros=np.zeros):  # fmt: skip
  """{box, seg_box, clear_span, clear_key, clear_weight} of a pre-integrated
  pool in narrow tiles.

  Args:
    pool: {field: [N, tile]} the sampled fields (u, v, du, u_mid, ...; with
      shading diffuse, specular, ...).
    start, length: [T, tile] float32 each ray's box entry past its grid
      point and chord length (mm).
    first_chunk, num_steps: [T] int32 each tile's first pool chunk and its
      longest ray's segments.
    step_mm: the depth grid's step (mm). bins: (bins_y, bins_x).
    zeros: the fields' allocator (np.zeros' signature; the native build
      passes pool_pages.zeros).
  """
  first_row = np.asarray(first_chunk) * CHUNK
  out = {}
  out['box'], out['seg_box'] = native_segment_boxes.both(
      pool, start, length, first_row, num_steps, step_mm, bins, zeros
  )
  out.update(
      native_clear_blocks.of_pool(
          {**pool, 'box': out['box']},
          first_chunk,
          num_steps,
          start,
          length,
          step_mm,
          bins,
          zeros,
      )
  )
  return out
