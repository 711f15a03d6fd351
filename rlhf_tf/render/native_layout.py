"""The ray cache's pool in narrow tiles, for the native march on CPU.

The cache is built in tiles of ``settings.cache_tile_rays`` (4096) rays,
their samples sample-major, [rows, tile]: one row of a tile is one wide
vector for the XLA march. The native march (``cached_native``) walks
GROUP rays at a time, and in that layout every row of a group lies 16 KB
(4096 int32) after the previous one, on another page, where neither the
hardware prefetcher nor the TLB follows: on Cranium 256^2 the forward
spent more than half its time waiting for memory (single thread, CPU time:
62 ms in wide tiles, 30 ms with each group's samples contiguous).

``regroup`` cuts every tile into tiles of GROUP rays (the last one padded),
each with whole chunks of CHUNK rows up to its own longest ray (rays are
sorted by length, so that is often less than the wide tile's: fewer rows
walked and stored). Nothing else changes: the result is a ``CacheTiles``
with tile = GROUP, which every march (XLA or native) renders to the same
image, and its shapes depend only on the wide one's (no recompilation per
view).
"""

from __future__ import annotations

import flax.struct
import jax
import numpy as np

from rlhf_tf.render.cached_march import CHUNK
from rlhf_tf.render.native_cache import kernel

# Rays per narrow tile: 16 int32 = one 64-byte cache line per row.
GROUP = 16


def wanted(settings, labels: bool) -> bool:
  """Whether a cache is built in narrow tiles by default: where a native
  march renders it (CPU; ``cached_render``). Labels keep wide tiles:
  ``render_cached_labels`` runs the XLA march, which is faster on wide
  rows."""
  del settings  # Both classifications have a native march.
  return jax.default_backend() == 'cpu' and not labels


@kernel(nogil=True)
def _put(dst, data, first_dst, rows):
  """dst [chunks * CHUNK, GROUP] <- data [rows, tile], one wide tile's
  rows: its narrow tile u (columns u * GROUP ...) takes rows[u] rows to
  row first_dst[u] of dst. Row by row (reading data in order: a walk down
  a column would meet a new page every row); on one thread (the build
  calls it once per wide tile and field: ~1.5x a plain copy)."""
  group = dst.shape[1]
  tile = data.shape[1]
  per = first_dst.shape[0]
  for r in range(data.shape[0]):
    for u in range(per):
      if r >= rows[u]:
        break  # Narrow tiles are sorted by length: the rest are done.
      c0 = u * group
      d = first_dst[u] + r
      for c in range(min(group, tile - c0)):
        dst[d, c] = data[r, c0 + c]


def narrow_rays(a, fill):
  """Per-ray [T, tile, ...] -> [T * per, GROUP, ...] (per = ceil(tile /
  GROUP)), padding rays = fill."""
  n_tiles, tile = a.shape[:2]
  per = -(-tile // GROUP)
  out = np.full((n_tiles, per * GROUP) + a.shape[2:], fill, a.dtype)
  out[:, :tile] = a
  return out.reshape((n_tiles * per, GROUP) + a.shape[2:])


@flax.struct.dataclass
class Plan:
  """Where each narrow tile's rows go: num_steps, num_chunks, first_chunk
  [T * per] of the narrow tiles (numpy)."""

  num_steps: np.ndarray
  num_chunks: np.ndarray
  first_chunk: np.ndarray
  per: int = flax.struct.field(pytree_node=False)


def plan(samples, tile_steps, extra: int) -> Plan:
  """The narrow tiles of wide tiles whose rays have samples [T, tile]
  samples (segments) each (0: padding) and tile_steps [T] rows to walk;
  extra: rows stored past a ray's last sample (1 with pre-integration)."""
  n_tiles, tile = samples.shape
  per = -(-tile // GROUP)
  steps = narrow_rays(np.asarray(samples, np.int32), 0).max(axis=1)
  steps = np.minimum(steps, np.repeat(np.asarray(tile_steps), per))
  chunks = np.where(steps > 0, -(-(steps + extra) // CHUNK), 0)
  first = np.cumsum(chunks) - chunks
  return Plan(
      num_steps=steps.astype(np.int32),
      num_chunks=chunks.astype(np.int32),
      first_chunk=first.astype(np.int32),
      per=per,
  )


def put(dst, data, t: int, where: Plan):
  """Stores wide tile t's rows data [rows, tile] (rows from its first) in
  the narrow pool field dst [N * per, GROUP]."""
  u = slice(t * where.per, (t + 1) * where.per)
  _put(
      dst,
      data,
      (where.first_chunk[u] * CHUNK).astype(np.int64),
      (where.num_chunks[u] * CHUNK).astype(np.int64),
  )


def regroup(tiles: dict, samples, extra: int, no_pixel: int) -> dict:
  """CacheTiles fields (numpy) in tiles of GROUP rays.

  Args:
    tiles: {field: numpy array or None} of a ``CacheTiles`` (pool fields
      [N, tile], per-ray ones [T, tile], per-tile ones [T]).
    samples: [T, tile] each ray's sample (segment) count; or None: every
      ray as its tile's longest (``num_steps``).
    extra: rows stored past a ray's last sample (1 with pre-integration).
    no_pixel: the padding rays' pixel index (H * W).

  Returns:
    The same fields with tile = GROUP: [T * per] tiles (per =
    ceil(tile / GROUP)), pool fields [N * per, GROUP], each wide tile's
    narrow ones in as many rows as it had, or fewer.
  """
  n_tiles, tile = tiles['pixels'].shape
  if samples is None:
    samples = np.broadcast_to(tiles['num_steps'][:, None], (n_tiles, tile))
  samples = np.where(tiles['pixels'] < no_pixel, samples, 0)
  where = plan(samples, tiles['num_steps'], extra)
  out = {
      'pixels': narrow_rays(tiles['pixels'], no_pixel),
      'length': narrow_rays(tiles['length'], 0.0),
      'start': narrow_rays(tiles['start'], 0.0),
      'first_chunk': where.first_chunk,
      'num_chunks': where.num_chunks,
      'num_steps': where.num_steps,
  }
  for k, v in tiles.items():
    # (Block and segment boxes and clear blocks' weights are built for
    # narrow tiles only.)
    if k in out or k in ('box', 'seg_box') or k.startswith('clear_'):
      continue
    if v is None:
      continue
    dst = np.zeros((v.shape[0] * where.per, GROUP), v.dtype)
    for t in range(n_tiles):
      first = int(tiles['first_chunk'][t]) * CHUNK
      put(dst, v[first : first + int(tiles['num_chunks'][t]) * CHUNK], t, where)
    out[k] = dst
  return out
