"""Empty-space skipping: which blocks of the volume a TF cannot see.

The volume is cut into blocks of BLOCK^3 voxels. Per block we keep the range
of everything a sample taken in it can look up in the TF: min / max HU and
max |gradient| over the block's voxels plus a halo (``halo_voxels``) that
covers every voxel a segment assigned to the block can read. Every march
(native point / pre-integrated, XLA) assigns segment i to the block holding
its midpoint m (clamped to the volume) and samples points within half a
step of m (the midpoint; pre-integration also its ends and chords between),
i.e. within r = step / (2 spacing) voxels of m along each axis; a
trilinear sample at c reads voxels floor(c) and floor(c) + 1 (clamped). With
m in [b B, (b + 1) B] that is voxels b B - ceil(r) .. (b + 1) B + 1 +
floor(r): a halo of ceil(r) below the block and floor(r) + 2 past its last
voxel (plus a 1e-3 voxel margin for the rounding of the coordinates and of
the march's block exits). Trilinear HU is a convex combination of voxel
values, so it lies in [min, max]; the interpolated gradient vector's norm
lies in [0, max |g|] (vectors may cancel, so 0 is the only lower bound);
pre-integration's chords between sampled values stay within them. A block
is EMPTY for a TF table when every bin that a bilinear lookup of a point in
that JH rectangle can touch has alpha <= ``skip_threshold`` (the
rectangle's bins and their right / upper neighbours).

THRESHOLD AND ITS PIXEL EFFECT. The TF is a soft sigmoid indicator, so its
opacity is never exactly 0 away from a polygon; a block is skipped when its
bins' alpha (per reference step l_ref) is at most

  a_skip = 1 - (1 - tol)^(l_ref / L_max),     tol = empty_space_tolerance,

with L_max = S * step the longest chord. The samples skipped on one ray
then have optical depth <= L_max / l_ref * -log(1 - a_skip) = -log(1 - tol),
i.e. they could add at most an opacity A_s = tol; removing them changes
each RGBA channel of a pixel by at most A_s / (1 - A_s) (the light they
would have absorbed) + A_s (what they would have emitted) <= 2.0005 tol.
At the default tol = 5e-4 that is 1e-3, a quarter of an 8-bit grey level
(tests/test_empty_space.py checks it on random volumes and TFs). Blocks whose
bins are all exactly 0 are skipped at no error at all.
"""

from __future__ import annotations

import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

BLOCK = 4  # Voxels per block edge (4: less direct-render CPU than 8).
# Voxels of slack in the halo for the rounding of sample coordinates (float32
# marches: ~1e-4 voxel at 500 voxels) and of the march's block exits.
ROUNDING_MARGIN = 1e-3


@flax.struct.dataclass
class BlockRanges:
  """Per-block value ranges [Bz, By, Bx] of a packed volume (see module)."""

  hu_min: jnp.ndarray
  hu_max: jnp.ndarray
  grad_max: jnp.ndarray  # max |gradient| (HU/mm).
  block: int = flax.struct.field(pytree_node=False, default=BLOCK)
  # ((below, above),) * 3 voxels per axis (halo_voxels).
  halo: tuple = flax.struct.field(
      pytree_node=False, default=((1, 2), (1, 2), (1, 2))
  )


def halo_voxels(spacing, step_mm: float) -> tuple:
  """((below, above),) per axis: voxels a block's ranges reach past its low
  and high faces (module docstring): ceil(r) and floor(r) + 2 with r =
  step / (2 spacing) plus ROUNDING_MARGIN."""
  out = []
  for s in spacing:
    r = 0.5 * float(step_mm) / float(s) + ROUNDING_MARGIN
    out.append((int(math.ceil(r)), int(math.floor(r)) + 2))
  return tuple(out)


def skip_threshold(
    num: int, step_mm: float, reference_step_mm: float, tolerance: float
) -> float:
  """a_skip (module docstring): the TF opacity per reference step at or
  below which a bin counts as empty, so that all skipped samples of a chord
  of num * step_mm add at most ``tolerance`` opacity."""
  if tolerance <= 0:
    return 0.0
  chord = num * float(step_mm)
  return float(-np.expm1(np.log1p(-tolerance) * reference_step_mm / chord))


def _window_reduce(x, block, halo, op, init):
  """[Z, Y, X] -> [Bz, By, Bx] op over each block grown by halo ((below,
  above) voxels per axis; voxels outside the volume are ignored). One axis
  at a time (min and max are separable): ~3 (block + below + above) reads
  per block voxel instead of their cube."""
  init = jnp.asarray(init, x.dtype)
  for a, (n, (lo, hi)) in enumerate(zip(x.shape, halo)):
    nb = -(-n // block)
    window, strides, pads = [1] * 3, [1] * 3, [(0, 0)] * 3
    window[a], strides[a] = block + lo + hi, block
    pads[a] = (lo, nb * block - n + hi)
    x = jax.lax.reduce_window(
        x, init, op, tuple(window), tuple(strides), tuple(pads)
    )
  return x


@functools.partial(jax.jit, static_argnames=('block', 'halo'))
def _ranges(packed, block, halo):
  hu = jax.lax.stop_gradient(packed[..., 0])
  g = jax.lax.stop_gradient(packed[..., 1:])
  # max |g| = sqrt(max |g|^2) (sqrt is monotone): one sqrt per block.
  sq = g[..., 0] * g[..., 0] + g[..., 1] * g[..., 1] + g[..., 2] * g[..., 2]
  return BlockRanges(
      hu_min=_window_reduce(hu, block, halo, jax.lax.min, jnp.inf),
      hu_max=_window_reduce(hu, block, halo, jax.lax.max, -jnp.inf),
      grad_max=jnp.sqrt(_window_reduce(sq, block, halo, jax.lax.max, 0.0)),
      block=block,
      halo=halo,
  )


def block_ranges(packed, spacing, step_mm: float, block: int = BLOCK):
  """BlockRanges of a packed volume [Z, Y, X, 4] (sampling.pack_volume) for
  marching at step_mm (or any smaller step). Depends on the volume only:
  compute once and pass it to every render of the volume."""
  halo = halo_voxels(spacing, step_mm)
  return _ranges(packed, int(block), halo)


def check_ranges(ranges: BlockRanges, shape, spacing, step_mm: float):
  """ValueError when ranges were made for another volume or a larger halo
  is needed at this step."""
  need = halo_voxels(spacing, step_mm)
  nb = tuple(-(-n // ranges.block) for n in shape)
  if tuple(ranges.hu_min.shape) != nb or any(
      h[0] < n[0] or h[1] < n[1] for h, n in zip(ranges.halo, need)
  ):
    raise ValueError(
        f'block ranges {ranges.hu_min.shape} (halo {ranges.halo}) do not fit '
        f'a {tuple(shape)} volume marched at step {step_mm} mm (blocks {nb}, '
        f'halo >= {need}); use empty_space.block_ranges(packed, spacing, '
        'step_mm)'
    )


def _bin_range(v, n: int):
  """Lower-left bin tf_coords gives JH coordinate v on n bins."""
  u = jnp.clip(v * n - 0.5, 0.0, n - 1.0)
  return jnp.clip(jnp.floor(u), 0, n - 2).astype(jnp.int32)


def occupancy(ranges: BlockRanges, axes, alpha, threshold: float):
  """[Bz, By, Bx] bool: blocks where the TF opacity alpha [bins_y, bins_x]
  may exceed ``threshold`` (False = empty, safe to skip)."""
  alpha = jax.lax.stop_gradient(alpha)
  by, bx = alpha.shape
  # below[j, i]: rows 0..j of column i hold a visible bin (row >= the
  # column's first visible row, by where none is); count: its prefix count
  # along x. Integers, so exact in any order: a min reduction and a
  # log-depth scan, not cummax / cumsum, which XLA:CPU lowers to windows
  # as long as the axis (~1.1 ms less per render at 256^2 bins).
  rows = jnp.arange(by, dtype=jnp.int32)
  first = jnp.min(jnp.where(alpha > threshold, rows[:, None], by), axis=0)
  below = (rows[:, None] >= first[None, :]).astype(jnp.int32)
  count = jnp.pad(
      jax.lax.associative_scan(jnp.add, below, axis=1), ((0, 0), (1, 0))
  )
  i0 = _bin_range(axes.hu_to_x(ranges.hu_min), bx)
  i1 = _bin_range(axes.hu_to_x(ranges.hu_max), bx) + 1
  j1 = _bin_range(axes.grad_to_y(ranges.grad_max), by) + 1
  # Flat lookups, in bounds with bins >= 2 (raymarch.check_table: 0 <= i0,
  # i1 + 1 <= bx, j1 <= by - 1): cheaper gathers than count[j1, i].
  flat, row = count.reshape(-1), j1 * (bx + 1)
  at = lambda k: flat.at[k].get(mode='promise_in_bounds')
  return at(row + i1 + 1) - at(row + i0) > 0


def dilate(occ):
  """[Bz, By, Bx] bool: the block or one of its 26 neighbours is occupied."""
  x = occ.astype(jnp.int32)
  grown = jax.lax.reduce_window(
      x,
      jnp.asarray(0, x.dtype),
      jax.lax.max,
      (3, 3, 3),
      (1, 1, 1),
      ((1, 1),) * 3,
  )
  return grown > 0


def group_samples(spacing, step_mm: float, block: int = BLOCK, cap: int = 0):
  """G, samples per group of the direct renderer's per-ray test (raymarch).

  A group's G samples lie within G / 2 steps of its centre along the ray,
  i.e. within G step / (2 min spacing) voxels along every axis; with that at
  most ``block``, each sample's block is the centre's or one of its
  neighbours, so the dilated occupancy (``dilate``) at the centre is True
  whenever one of the group's samples lies in an occupied block. G = 1
  tests each sample's own midpoint (no dilation). cap > 0 bounds G."""
  g = int(math.floor(2 * block * min(spacing) / float(step_mm) + 1e-9))
  return max(1, min(g, cap) if cap > 0 else g)


def next_occupied(occupied):
  """[..., n] bool -> [..., n] int32: the first index >= i that is True
  (n where none is)."""
  n = occupied.shape[-1]
  idx = jnp.where(occupied, jnp.arange(n, dtype=jnp.int32), n)
  return jax.lax.cummin(idx, axis=idx.ndim - 1, reverse=True)


def occupied_at(occ, block: int, coords):
  """[...] bool occupancy of the blocks holding continuous voxel coords
  [..., 3] (clamped to the volume as the trilinear lookup clamps)."""
  flat = 0
  nb = occ.shape
  for a in range(3):
    i = jnp.floor(coords[..., a] / block).astype(jnp.int32)
    flat = flat * nb[a] + jnp.clip(i, 0, nb[a] - 1)
  return occ.reshape(-1).at[flat].get(mode='promise_in_bounds')
