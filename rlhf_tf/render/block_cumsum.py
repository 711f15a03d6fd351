"""A cumulative sum in XLA CPU's own order of additions, ~2x faster there.

``preintegration.segment_table`` builds the (P, V) table of every TF a
cached re-render is given: P is a cumulative sum over the table's
intensity bins ([bins_y, bins_x - 1, 4] float32). ``jnp.cumsum`` lowers to
one reduce-window that XLA's CPU backend rewrites into two levels of
windows of 16 (ReduceWindowRewriter): each block of 16 elements summed in
order from 0, the blocks' totals summed in order from 0 before each block,
and the two added. As reduce-windows (16 loads and adds per element) that
took ~2.0 ms per 256^2 table, of a ~35-40 ms re-render of Cranium 256^2 on
2 cores; ``cumsum`` does the same additions in the same order as two short
scans (16 steps over whole blocks, then over the blocks' totals): ~1.0 ms
(wall, XLA's 2 threads, old / new alternated, median ratio 0.49; CPU 0.41)
and the same float32 values bit for bit (tests/test_block_cumsum.py), so
images do not change. Axes longer than 16 * 16 (which XLA splits in more
levels) go to ``jnp.cumsum``. Its gradient is the scans' (the cotangents
summed in another order than jnp.cumsum's reverse cumsum: equal up to
float32 rounding; a cached render's table gradient on Cranium moved by
3e-9 of its largest element).
"""

from __future__ import annotations

from jax import lax
import jax.numpy as jnp

# XLA CPU's window length when it splits a cumulative reduce-window.
BLOCK = 16


def cumsum(x, axis: int = -2):
  """jnp.cumsum(x, axis) in XLA CPU's order (module docstring)."""
  axis = axis % x.ndim
  n = x.shape[axis]
  if n == 0 or n > BLOCK * BLOCK:
    return jnp.cumsum(x, axis)
  blocks = -(-n // BLOCK)
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, blocks * BLOCK - n)
  # [BLOCK, ..., blocks, ...]: position within a block first (scanned).
  xs = jnp.pad(x, pad).reshape(
      x.shape[:axis] + (blocks, BLOCK) + x.shape[axis + 1 :]
  )
  xs = jnp.moveaxis(xs, axis + 1, 0)

  def add(acc, term):  # Running sums (in order from 0) and each one.
    acc = acc + term
    return acc, acc

  # Each block in order from 0 (a window's init value).
  _, within = lax.scan(add, jnp.zeros_like(xs[0]), xs)
  # Before block b: the totals of blocks 0 .. b - 1 in order from 0.
  totals = jnp.moveaxis(within[-1], axis, 0)  # [blocks, ...]
  _, upto = lax.scan(add, jnp.zeros_like(totals[0]), totals)
  before = jnp.concatenate([jnp.zeros_like(upto[:1]), upto[:-1]], 0)
  out = jnp.moveaxis(before, 0, axis)[None] + within  # [BLOCK, ...]
  out = jnp.moveaxis(out, 0, axis + 1).reshape(
      x.shape[:axis] + (blocks * BLOCK,) + x.shape[axis + 1 :]
  )
  return lax.slice_in_dim(out, 0, n, axis=axis)
