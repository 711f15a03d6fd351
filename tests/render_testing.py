"""Shared inputs of the renderer tests: tiny smooth volumes and random TF
tables with explicit seeds (test_raymarch.py, test_cached_march.py)."""

import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import native_layout, ray_cache
from rlhf_tf.render.histogram import JHAxes

AXES = JHAxes(hu_min=-1000.0, hu_max=1000.0, grad_max=400.0)
SPACING = (1.0, 1.25, 0.8)


def smooth_volume(shape=(8, 8, 8), seed=0, dtype=np.float32):
  """A smooth random volume in HU (blurred noise, spans the window)."""
  rng = np.random.default_rng(seed)
  v = rng.normal(size=shape)
  for a in range(3):
    v = (v + np.roll(v, 1, a) + np.roll(v, -1, a)) / 3
  return jnp.asarray(600 * v / np.abs(v).max(), dtype)


def random_table(bins=8, seed=0, alpha_max=0.6, dtype=np.float32):
  """[bins, bins, 4] RGBA with colours in [0.05, 1], alpha <= alpha_max."""
  rng = np.random.default_rng(seed)
  t = rng.uniform(0.05, 1.0, (bins, bins, 4))
  t[..., 3] *= alpha_max
  return jnp.asarray(t, dtype)


def small_cache(settings, seed, azimuth, dtype=np.float32):
  """The ray cache of an 8x8 perspective view (azimuth in degrees,
  elevation 20) of smooth_volume((10, 10, 10), seed) (the native block /
  segment box and clear-block weight tests)."""
  hu = smooth_volume((10, 10, 10), seed=seed, dtype=dtype)
  cam = camera_lib.orbit_camera(
      (10, 10, 10),
      SPACING,
      azimuth,
      20.0,
      width=8,
      height=8,
      projection='perspective',
  )
  return ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, 8, settings)


def native_and_xla_caches(hu, cam, bins, settings):
  """(native, XLA) builds of one view's ray cache (build_ray_cache with
  settings and with settings.native_march=False), for the native builds'
  tests."""
  build = lambda s: ray_cache.build_ray_cache(
      hu, None, SPACING, AXES, cam, bins, s
  )
  return build(settings), build(settings.replace(native_march=False))


def stored_entries(tiles, field, n_pixels):
  """[N, GROUP] bool: the entries of pool field [N, GROUP] of a
  narrow-tiled cache that belong to real rays (pixel < n_pixels; every row
  of their narrow tile: the march walks up to its longest ray)."""
  out = np.zeros(field.shape, bool)
  real = np.asarray(tiles.pixels) < n_pixels
  first = np.asarray(tiles.first_chunk) * native_layout.CHUNK
  rows = np.asarray(tiles.num_chunks) * native_layout.CHUNK
  for t in range(real.shape[0]):
    out[first[t] : first[t] + rows[t]] = real[t]
  return out
