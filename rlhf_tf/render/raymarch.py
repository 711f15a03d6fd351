"""Differentiable emission-absorption raymarcher for 2D (intensity x gradient
magnitude) transfer functions, in pure JAX.

Per ray (world frame and camera conventions: rlhf_tf.render.camera):
1. Intersect the volume box [-s/2, (n - 1/2) s] (slab method).
2. Fixed step ``step_mm`` on a depth grid t_k = (k + phase) step measured
   from the ray origin (the eye plane of an orthographic camera), not from
   the box entry: S = ceil(box diagonal / step) + 1 segments (static).
   Sample i stands for the part of the grid segment [t_k0+i, t_k0+i+1]
   inside the box [t0, t1] (t_k0 the last grid point at or before t0), of
   length l_i (the first and last are partial, l_i = 0 past the exit), and
   sits at its midpoint, so a homogeneous medium of any length L composites
   to exactly 1 - exp(-sigma L); interior samples sit at fixed depths, so
   the phase never jumps where rays change the box face they enter through
   (no seam). ``settings.jitter`` gives each pixel its own fixed phase
   (sampling.pixel_phase), trading coherent rings for fine noise.
3. Trilinear sampling (clamp-to-edge) of HU and of the gradient volume
   (``rlhf_tf.render.gradient.central_gradient``, HU/mm): 8-corner gathers,
   differentiable w.r.t. the volume values and, almost everywhere, positions.
4. JH coordinates x = axes.hu_to_x(hu), y = axes.grad_to_y(|g|) and a
   post-classification bilinear lookup of the TF table [bins_y, bins_x, 4]
   (bin i centred at (i + 1/2) / bins, clamped to the border bins).
5. Opacity correction alpha' = 1 - (1 - alpha)^(l_i / reference_step_mm).
4'-5'. ``settings.preintegrate``: instead of 4-5, samples at the segment ends
   (the depth-grid points, clamped to the box) and at the segments'
   midpoints, and pre-integrated classification of each segment in two
   halves, front -> midpoint -> back, each split where its ends' exact
   slopes bracket a crest (preintegration.extremum)
   (Engel, Kraus & Ertl 2001; rlhf_tf.render.preintegration): the TF's
   extinction and emission integrated along the segment, so a TF feature
   thinner than the step is seen whatever the sample phase (no wood-grain
   rings); each half is shaded between its ends' terms
   (preintegration.shading_weight).
6. Blinn-Phong headlight shading from n = g / |g| (two-sided), see
   ``compositing.headlight_terms``; ``settings.tensor_normals``: from the
   gradient's structure tensor instead (``compositing.
   tensor_headlight_terms``: no swing across thin plates).
7. Front-to-back compositing (``compositing.composite_log``) over an opaque
   background: RGBA [H, W, 4] in [0, 1], alpha = accumulated opacity.

SPEED (direct renderer): on CPU, rays are marched by numba, each on its own
(``settings.native_march``; the same optics, per-ray empty-space skipping
and early termination within the same bounds): point samples by
``rlhf_tf.render.direct_native`` (an exact hand-written adjoint),
pre-integrated segments by ``direct_native_segments`` (forward only: the
gradient is this XLA march's). Otherwise (GPU / TPU, point-sampled
tensor_normals shading, native_march=False) rays go in square-ish image
tiles, each marched in
chunks of ``settings.march_chunk`` samples from each ray's own position;
a ray skips groups of samples that lie in blocks the TF cannot see
(empty-space skipping, ``rlhf_tf.render.empty_space``; pixels differ by at
most 2.0005 x ``settings.empty_space_tolerance``, 1e-3 by default) and a
tile stops when every ray has left the box or has transmittance below
``settings.termination_transmittance`` (early ray termination; pixels differ
by less than it, 1e-3 by default). Point-sampled chunks run in stages
(``rlhf_tf.render.direct_chunk``). Skipping and termination are tested in
tests/test_empty_space.py.
``rlhf_tf.render.ray_cache`` goes further for re-rendering one view under
many TFs.

MEMORY: rays are processed in tiles of ``tile_rays`` by ``jax.lax.map`` over a
``jax.checkpoint``-ed tile function. The forward pass keeps one tile's
samples alive at a time; reverse mode stores only each tile's inputs and
recomputes the tile's samples while back-propagating through it, so the
backward pass also holds one tile's intermediates at a time (plus the
per-tile outputs [H, W, 4]), whatever the image size.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import (
    compositing,
    direct_chunk,
    direct_native,
    direct_native_segments,
    empty_space,
    preintegration,
)
from rlhf_tf.render.gradient import central_gradient
from rlhf_tf.render.histogram import JHAxes
from rlhf_tf.render.ray_samples import (
    map_tiles,
    sample_rays,
    shade_and_composite,
)
from rlhf_tf.render.render_settings import RenderSettings
from rlhf_tf.render.sampling import (
    bilinear_lookup,
    corner_table,
    grid_start,
    intersect_box,
    num_samples,
    pack_volume,
    packed_volume,
    pixel_phase,
    tf_coords,
)


def square_tile_order(h: int, w: int, tile_rays: int) -> np.ndarray:
  """[H * W] pixel order that makes consecutive runs of tile_rays pixels
  square-ish image blocks (side isqrt(tile_rays)), row-major within and
  across blocks: the rays of a tile then meet the same blocks of the volume
  and saturate together (empty-space skipping, early termination)."""
  side = max(1, math.isqrt(max(1, int(tile_rays))))
  r, c = np.divmod(np.arange(h * w), w)
  return np.lexsort((c % side, r % side, c // side, r // side))


def _group_centres(o, d, t0, start, num_groups, group, step_mm, spacing):
  """Continuous voxel coords [R, num_groups, 3] of the centres of groups of
  ``group`` samples (depth (j group + group / 2) step past the ray's first
  grid point): every sample of group j lies within group / 2 steps of it."""
  j = jnp.arange(num_groups, dtype=t0.dtype)
  t = (t0 - start)[..., None] + (j * group + 0.5 * group) * step_mm
  points = o[..., None, :] + t[..., None] * d[..., None, :]
  return points / jnp.asarray(spacing, points.dtype)


def native_march(settings: RenderSettings) -> bool:
  """Whether the direct renderer marches with numba: on CPU with
  settings.native_march, pre-integrated (direct_native_segments) or
  point-sampled (direct_native) with shading (if on) from the mean
  gradient (not settings.tensor_normals)."""
  return (
      settings.native_march
      and (
          settings.preintegrate
          or not (settings.shading and settings.tensor_normals)
      )
      and jax.default_backend() == 'cpu'
  )


@functools.partial(jax.jit, static_argnames=('spacing', 'axes', 'settings'))
def _render(packed, spacing, axes, tf_table, camera, settings, ranges):
  """The direct renderer's march (see render).

  Rays go in square-ish tiles (square_tile_order) through jax.checkpoint-ed
  lax.map; each tile marches in chunks of settings.march_chunk samples (a
  fori_loop with a static trip count, so reverse mode works), each ray from
  its own sample index:
  - with settings.skip_empty_space, a ray starts at, and after each chunk
    jumps to, the next group of empty_space.group_samples samples that may
    hold a sample in a block the TF can see (one test per group, at its
    centre, against the dilated occupancy; skipped samples add at most
    settings.empty_space_tolerance opacity to a ray);
  - a chunk is computed only when (lax.cond) some ray of the tile is still
    inside its chord with transmittance >= settings.termination_transmittance
    (early ray termination: the rest of a stopped ray adds less than that to
    any channel);
  - point sampling runs the chunk in stages (direct_chunk), which XLA:CPU
    compiles to far cheaper loops than sample_rays' row gathers.
  Tiles missing the box or done cost one predicate per chunk.
  On CPU with settings.native_march: direct_native(_segments) (see
  native_march).
  """
  if native_march(settings) and settings.preintegrate:
    xla = settings.replace(native_march=False)  # Its VJP is the gradient.
    return direct_native_segments.render(
        *(packed, spacing, axes, tf_table, camera, settings, ranges),
        lambda p, t, c, r: _render(p, spacing, axes, t, c, xla, r),
    )
  if native_march(settings):
    return direct_native.render(
        packed, spacing, axes, tf_table, camera, settings, ranges
    )
  shape = tuple(packed.shape[:3])
  num = num_samples(shape, spacing, settings.step_mm)
  k = max(1, min(int(settings.march_chunk), num))
  n_chunks = -(-num // k)
  by, bx = tf_table.shape[:2]
  if settings.preintegrate:
    pairs = preintegration.row_pairs(
        preintegration.segment_table(tf_table, settings.reference_step_mm)
    )
  else:
    corners = corner_table(tf_table)
  origins, directions = camera_lib.generate_rays(camera)
  h, w = origins.shape[:2]
  lo, hi = camera_lib.volume_box(shape, spacing)
  dtype = jnp.result_type(packed.dtype, tf_table.dtype)
  step = settings.step_mm
  occ = None
  if settings.skip_empty_space:
    threshold = empty_space.skip_threshold(
        num, step, settings.reference_step_mm, settings.empty_space_tolerance
    )
    # Pre-integration classifies chords between values sampled inside the
    # segment, within the block ranges' halo as a point sample is.
    occ = empty_space.occupancy(ranges, axes, tf_table[..., 3], threshold)

  # direct_chunk shades from the mean gradient only.
  staged = (
      not settings.preintegrate
      and not (settings.shading and settings.tensor_normals)
      and math.prod(shape) <= direct_chunk.MAX_VOXELS
  )

  def chunk_colour(o, d, p, first, chord, todo):
    """(premultiplied rgb, opacity) of segments first .. first + k - 1;
    chord = (t0, start, length) of each ray; todo: the traced True that
    gates the chunk (direct_chunk's stage predicate)."""
    if staged:
      rgb, acc = direct_chunk.chunk_colour(
          packed,
          spacing,
          axes,
          (by, bx),
          corners,
          settings,
          (o, d) + chord,
          first,
          k,
          todo,
      )
      return rgb.astype(dtype), acc.astype(dtype)
    if settings.preintegrate:  # k segments between k + 1 samples.
      s = sample_rays(
          packed, shape, spacing, axes, o, d, p, k + 1, settings, None, first
      )
      e, log_trans = preintegration.classify(pairs, s, settings, bx, by)
      rgb, acc = compositing.composite_emission(e, log_trans)
      return rgb.astype(dtype), acc.astype(dtype)
    s = sample_rays(
        packed, shape, spacing, axes, o, d, p, k, settings, None, first
    )
    rgba = bilinear_lookup(corners, *tf_coords(s['x'], s['y'], bx, by))
    rgb, acc = shade_and_composite(rgba, s, settings)
    return rgb.astype(dtype), acc.astype(dtype)

  if occ is not None:
    group = empty_space.group_samples(
        spacing, step, ranges.block, settings.skip_group
    )
    num_groups = -(-num // group)
    test = empty_space.dilate(occ) if group > 1 else occ

  def resume_table(o, d, t0, start):
    """[R, num_groups] int32: the first sample of the first group at or
    after group j that has a sample in an occupied block (num_groups *
    group past the last): where a ray resumes its march."""
    centres = _group_centres(o, d, t0, start, num_groups, group, step, spacing)
    hit = empty_space.occupied_at(test, ranges.block, centres)
    return empty_space.next_occupied(hit) * group

  def tile_fn(rays):
    o, d, p = rays
    t0, t1 = intersect_box(o, d, lo, hi)
    length = jnp.maximum(t1 - t0, 0.0)
    start = grid_start(t0, step, p)
    # Chord end past the ray's first grid point (0 for rays missing the box).
    end = jnp.where(t1 > t0, start + length, 0.0)
    if occ is None:
      resume = None
      pos = jnp.zeros(o.shape[:-1], jnp.int32)
    else:
      resume = resume_table(o, d, t0, start)
      pos = resume[..., 0]

    def run(todo, carry):
      rgb, trans, pos = carry
      c_rgb, c_acc = chunk_colour(o, d, p, pos, (t0, start, length), todo)
      after = pos + k
      if resume is not None:  # Jump over groups with no occupied sample.
        j = jnp.minimum(after // group, num_groups - 1)
        after = jnp.maximum(
            after, jnp.take_along_axis(resume, j[..., None], -1)[..., 0]
        )
      return rgb + trans[..., None] * c_rgb, trans * (1.0 - c_acc), after

    def chunk(c, carry):
      del c
      live = (carry[2] * step < end) & (
          carry[1] >= settings.termination_transmittance
      )
      todo = jnp.any(live)
      return jax.lax.cond(
          todo, functools.partial(run, todo), lambda x: x, carry
      )

    init = (
        jnp.zeros(o.shape[:-1] + (3,), dtype),
        jnp.ones(o.shape[:-1], dtype),
        pos,
    )
    rgb, trans, _ = jax.lax.fori_loop(0, n_chunks, chunk, init)
    return rgb, 1.0 - trans

  order = square_tile_order(h, w, settings.tile_rays)
  phase = pixel_phase(jnp.asarray(order), w, settings.jitter)
  rgb, acc = map_tiles(
      tile_fn,
      (origins.reshape(-1, 3)[order], directions.reshape(-1, 3)[order], phase),
      settings.tile_rays,
  )
  inverse = np.argsort(order)
  out = compositing.over_background(
      rgb[inverse], acc[inverse], settings.background
  )
  return out.reshape(h, w, 4)


def check_table(tf_table):
  if (
      tf_table.ndim != 3
      or tf_table.shape[-1] != 4
      or min(tf_table.shape[:2]) < 2
  ):
    raise ValueError(
        f'tf_table must be [bins_y, bins_x, 4] with bins >= 2, '
        f'got {tf_table.shape}'
    )


def render(
    volume_hu,
    gradient,
    spacing,
    axes: JHAxes,
    tf_table,
    camera: camera_lib.Camera,
    settings: RenderSettings = RenderSettings(),
    *,
    packed=None,
    ranges=None,
):
  """Renders a volume with a 2D TF (jitted; vmappable over TF tables).

  Args:
    volume_hu: [Z, Y, X] HU.
    gradient: [Z, Y, X, 3] central_gradient(volume_hu, spacing) in HU/mm, or
      None to compute it here (then d/d volume_hu includes the gradient path).
    spacing: (3,) mm along (Z, Y, X) (static).
    axes: the JH axes mapping HU and |grad| to [0, 1].
    tf_table: [bins_y, bins_x, 4] RGBA in [0, 1]; alpha per reference step.
    camera: the camera (world frame of rlhf_tf.render.camera).
    settings: RenderSettings.
    packed: optional [Z, Y, X, 4] from packed_volume / pack_volume; when
      given, volume_hu and gradient are ignored (may be None). Saves the
      per-call packing copy (large volumes).
    ranges: optional empty_space.BlockRanges of the packed volume for
      settings.step_mm (empty_space.block_ranges): saves recomputing them
      (a pass over the volume) when a volume is rendered more than once.

  Returns:
    [H, W, 4] RGBA in [0, 1]: rgb composited over settings.background,
    alpha = accumulated opacity.
  """
  check_table(tf_table)
  spacing = tuple(float(s) for s in np.asarray(spacing).reshape(3))
  if packed is None:
    if gradient is None:
      gradient = central_gradient(volume_hu, spacing)
    packed = pack_volume(volume_hu, gradient)
  if not settings.skip_empty_space:
    ranges = None
  elif ranges is None:
    ranges = empty_space.block_ranges(packed, spacing, settings.step_mm)
  else:
    empty_space.check_ranges(
        ranges, packed.shape[:3], spacing, settings.step_mm
    )
  return _render(packed, spacing, axes, tf_table, camera, settings, ranges)


def render_volume(
    volume,
    axes: JHAxes,
    tf_table,
    camera: camera_lib.Camera,
    settings: RenderSettings = RenderSettings(),
    packed=None,
    ranges=None,
):
  """render() for a rlhf_tf.data.volume.Volume (packed HU + gradient built
  with packed_volume if not given; pass it, and the block ranges, to
  re-render cheaply)."""
  if packed is None:
    packed = packed_volume(volume.hu, volume.spacing)
  return render(
      None,
      None,
      volume.spacing,
      axes,
      tf_table,
      camera,
      settings,
      packed=packed,
      ranges=ranges,
  )
