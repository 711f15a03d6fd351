"""The scanner effects a CBCT adds to the painted head phantom (see
``phantom.make_head_phantom``), in HU, in place, slab by slab.

Metal: per filling a pattern of bright and dark streaks through it (photon
starvation / scatter, amplitude ~ 1/r), and a dark band between two fillings
at the same height (beam hardening). Then a separable Gaussian blur (the
system PSF combined with the voxel footprint), in-plane correlated Gaussian
noise whose slice k comes from (noise key, k) alone -- so the volume does
not depend on the slab size -- and the clip to the CT value range. The
amounts are ``PhantomConfig``'s (streak_*, dark_band_hu, blur_*,
partial_volume, noise_*, hu_clip).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from rlhf_tf.data import phantom_shapes as shapes


def _gaussian_kernel(sigma_vox: float) -> np.ndarray:
  """Normalised 1D Gaussian taps (radius 4 sigma); [1] for sigma ~ 0."""
  if sigma_vox < 1e-3:
    return np.ones(1, np.float32)
  r = max(int(math.ceil(4.0 * sigma_vox)), 1)
  k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_vox) ** 2)
  return (k / k.sum()).astype(np.float32)


def _blur_kernels(spacing, config):
  """Per-axis kernels (Z, Y, X): PSF std in voxels, combined in quadrature
  with the voxel footprint (a box of one voxel ~ Gaussian std 1/sqrt(12))."""
  pv = 1.0 / 12.0 if config.partial_volume else 0.0
  psf = [
      max(config.blur_mm / s, config.blur_min_voxels)
      if config.blur_mm > 0
      else 0.0
      for s in spacing
  ]
  return [
      _gaussian_kernel(math.sqrt(p**2 + pv))
      if (p > 0 or pv > 0)
      else np.ones(1, np.float32)
      for p in psf
  ]


def streak_planes(anat, maps, rng, config):
  """In-plane metal artifacts: per filling a (Y, X) pattern of bright/dark
  lines through it (photon starvation / scatter streaks, amplitude ~ 1/r),
  and a dark band between each pair of fillings at the same height (beam
  hardening). Returns [(pattern, z0, z1)] with the z range it applies to
  (all in the anatomy's frame, like the fillings)."""
  yy, xx = maps.y[:, None], maps.x[None, :]
  fills = shapes.fillings(anat)
  planes = []
  for fx, fy, z0, z1 in fills:
    dx, dy = xx - np.float32(fx), yy - np.float32(fy)
    r = np.hypot(dx, dy)
    width = 0.4 + 0.01 * r  # Streaks widen away from the metal.
    pattern = np.zeros_like(r)
    for theta, amp in zip(
        rng.uniform(0, np.pi, config.streak_lines),
        rng.choice([-1.0, 1.0], config.streak_lines)
        * rng.uniform(0.4, 1.0, config.streak_lines),
    ):
      d = dx * np.float32(math.sin(theta)) - dy * np.float32(math.cos(theta))
      pattern += np.float32(amp) * np.exp(-0.5 * (d / width) ** 2)
    decay = config.streak_decay_mm / (r + config.streak_decay_mm)
    planes.append((config.streak_hu * pattern * decay, z0, z1))
  for i in range(len(fills)):
    for j in range(i + 1, len(fills)):
      (xa, ya, a0, a1), (xb, yb, b0, b1) = fills[i], fills[j]
      if min(a1, b1) <= max(a0, b0):
        continue  # Not in the same slices: no shared projection path.
      ux, uy = xb - xa, yb - ya
      length = math.hypot(ux, uy)
      t = ((xx - xa) * ux + (yy - ya) * uy) / max(length, 1e-6) ** 2
      d = np.abs((xx - xa) * uy - (yy - ya) * ux) / max(length, 1e-6)
      beyond = np.maximum(np.maximum(-t, t - 1.0), 0.0) * length
      band = np.exp(-0.5 * (d / 1.5) ** 2 - beyond / 10.0)
      planes.append((-config.dark_band_hu * band, max(a0, b0), min(a1, b1)))
  return [(p.astype(np.float32), z0, z1) for p, z0, z1 in planes]


def add_streaks(hu, z, planes, dz):
  """Adds each plane, weighted 1 inside its z range and a Gaussian tail of
  std max(dz, 0.5 mm) outside, to the slab hu [nz, Y, X] in place."""
  sigma = max(dz, 0.5)
  for pattern, z0, z1 in planes:
    outside = np.maximum(np.maximum(z0 - z, z - z1), 0.0)
    wz = np.exp(-0.5 * (outside / sigma) ** 2).astype(np.float32)
    for k in np.nonzero(wz > 1e-3)[0]:
      hu[k] += wz[k] * pattern


def _noise_slice(noise_key_words, k, shape_yx, ky, kx):
  """Unit-variance, in-plane correlated Gaussian noise of slice k."""
  rng = np.random.default_rng(list(noise_key_words) + [int(k)])
  white = rng.standard_normal(shape_yx, dtype=np.float32)
  white = ndimage.correlate1d(white, ky, axis=0, mode='reflect')
  white = ndimage.correlate1d(white, kx, axis=1, mode='reflect')
  # A normalised kernel k scales white-noise variance by sum(k^2).
  return white / np.float32(math.sqrt(float((ky**2).sum() * (kx**2).sum())))


def blur_noise_clip(hu, spacing, config, noise_words, slab):
  """In place: separable blur (Z with a rolling halo of original slices),
  then noise and the HU clip, slab by slab."""
  kz, ky, kx = _blur_kernels(spacing, config)
  nk = [_gaussian_kernel(config.noise_corr_mm / s) for s in spacing[1:]]
  halo = len(kz) // 2
  slab = max(slab, halo, 1)
  nz = hu.shape[0]
  prev = hu[:0].copy()  # Original (unblurred) slices just below the slab.
  for k0 in range(0, nz, slab):
    k1 = min(k0 + slab, nz)
    ext = np.concatenate([prev, hu[k0 : min(k1 + halo, nz)]])
    prev = hu[max(k1 - halo, 0) : k1].copy()
    if halo:
      ext = ndimage.correlate1d(ext, kz, axis=0, mode='nearest')
    out = ext[ext.shape[0] - (min(k1 + halo, nz) - k0) :][: k1 - k0]
    if len(ky) > 1:
      out = ndimage.correlate1d(out, ky, axis=1, mode='nearest')
    if len(kx) > 1:
      out = ndimage.correlate1d(out, kx, axis=2, mode='nearest')
    if noise_words is not None and config.noise_sigma_hu > 0:
      for k in range(k0, k1):
        out[k - k0] += np.float32(config.noise_sigma_hu) * _noise_slice(
            noise_words, k, hu.shape[1:], nk[0], nk[1]
        )
    np.clip(out, config.hu_clip[0], config.hu_clip[1], out=out)
    hu[k0:k1] = out
