"""RenderSettings: the raymarching settings every renderer takes: the direct
march (``rlhf_tf.render.raymarch``), the ray cache (``ray_cache``,
``cached_render``) and the naive reference (``raymarch_naive``)."""

from __future__ import annotations

import functools

import flax.struct

_static = functools.partial(flax.struct.field, pytree_node=False)


@flax.struct.dataclass
class RenderSettings:
  """Raymarching settings (all static: hashable, safe as a jit argument)."""

  step_mm: float = _static(default=1.0)  # Sample spacing along a ray.
  reference_step_mm: float = _static(default=1.0)  # Step the TF alpha is for.
  ambient: float = _static(default=0.35)
  diffuse: float = _static(default=0.65)
  specular: float = _static(default=0.25)
  shininess: float = _static(default=16.0)
  background: tuple = _static(default=(0.0, 0.0, 0.0))  # RGB in [0, 1].
  # Direct renderer: rays per tile (memory bound; 16 x 16 pixel tiles stop
  # and skip together: 25 % less CPU than 1024 on Cranium 256^2).
  tile_rays: int = _static(default=256)
  # Ray cache: rays per tile of its pool (ray_cache.CacheTiles); wider tiles
  # make longer vectors for the cached march and the build (at most H * W).
  cache_tile_rays: int = _static(default=4096)
  # Unused since the direct renderer marches chunks (kept so that settings
  # made with it still hash and compare as before).
  sample_levels: int = _static(default=3)
  # Direct renderer: samples per chunk of its march (see _render).
  march_chunk: int = _static(default=32)
  # Direct renderer: most samples per group of its per-ray empty-space
  # test (empty_space.group_samples; 0 = as many as the block size allows).
  skip_group: int = _static(default=8)
  # Direct renderer: a tile of rays stops when every ray's transmittance is
  # below this (each pixel then differs by < it); 0 = march to the end. On
  # CPU (direct_native) and in the ray cache on CPU (cached_native) each ray
  # stops on its own.
  termination_transmittance: float = _static(default=1e-3)
  # Direct renderer: skip blocks the TF cannot see (empty_space); the
  # opacity skipped samples could add to a ray is at most the tolerance
  # (pixels differ by <= 2.0005 x it); tolerance 0 skips only blocks whose
  # TF bins are exactly 0 (no error).
  skip_empty_space: bool = _static(default=True)
  empty_space_tolerance: float = _static(default=5e-4)
  shading: bool = _static(default=True)
  # Normals n = g / max(|g|, normal_eps * axes.grad_max): below that gradient
  # magnitude (noise, flat regions) the normal shrinks to 0 and the sample
  # is lit by the ambient term only; also keeps the normal's direction well
  # conditioned (float32 rounding of a tiny g would otherwise swing it).
  normal_eps: float = _static(default=1e-2)
  # Shading terms from the gradient's structure tensor at the sample (the
  # trilinear mean of g g^T over the 8 voxels, compositing.
  # tensor_headlight_terms) instead of the trilinear mean gradient: on thin
  # plates seen edge-on the mean gradient cancels at the crest and the
  # headlight term swings within a fraction of a voxel (Cranium,
  # pre-integrated, shading on: 44.2 -> 47.0 dB default TF, 37.8 -> 40.0 dB
  # sharp TF vs the 1/8-step reference). Same terms for a constant gradient.
  tensor_normals: bool = _static(default=False)
  # A fixed per-pixel phase of the depth grid (sampling.pixel_phase) instead
  # of one phase for all rays.
  jitter: bool = _static(default=False)
  # Direct renderer on CPU: march with numba (rlhf_tf.render.direct_native:
  # per-ray skipping and termination, ~3x less CPU; pre-integrated:
  # direct_native_segments, ~6x less) instead of XLA; False = the XLA march
  # (GPU / TPU always use it, and so does point-sampled tensor shading).
  native_march: bool = _static(default=True)
  # Pre-integrated classification (rlhf_tf.render.preintegration): each
  # segment between two samples at consecutive depth-grid points is
  # classified as a whole, instead of one sample at its midpoint.
  preintegrate: bool = _static(default=False)
