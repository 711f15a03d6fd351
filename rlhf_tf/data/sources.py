"""One entry point from a config to a Volume: phantom | cranium | dicom | inv3.

Config fields (``config.volume``):
  source: 'phantom' | 'cranium' | 'dicom' | 'inv3'
  seed, shape, metal, noise: the built-in phantom (deterministic per seed)
  patient: True = each seed a different patient (phantom.patient_config:
    build, teeth, fillings, noise, blur, field of view); False = the
    reference head with only small anatomical jitter (absent = False: stores
    made before patients existed)
  spacing: phantom voxel size in mm (0 = the patient's FOV / shape; 0.2 with
    shape (547, 421, 547) is the paper's grid)
  path: DICOM directory or .inv3 file for 'dicom' / 'inv3'
  series_uid: which series of a DICOM folder holding several ('' = the only one)
  allow_non_ct: read a non-CT DICOM series / .inv3 project (MR, NM, ...) with a
    warning; its values are then not Hounsfield units
"""

from __future__ import annotations

import jax
import ml_collections

from rlhf_tf.data import dicom_io, invesalius, phantom, sample_fetch
from rlhf_tf.data.volume import Volume, VolumeError
from rlhf_tf.input_error import ConfigError

# Central-difference gradients and trilinear sampling need two voxels.
MIN_VOXELS_PER_AXIS = 2


def default_config() -> ml_collections.ConfigDict:
  """The ``config.volume`` block: the procedural phantom (``load_volume``
  reads every key; ``source`` picks phantom | cranium | dicom | inv3)."""
  return ml_collections.ConfigDict(
      dict(
          source='phantom',
          seed=0,
          shape=(128, 128, 128),
          metal=True,
          noise=True,
          patient=True,
          spacing=0.0,
          path='',
          series_uid='',
          allow_non_ct=False,
      )
  )


def _phantom(cfg) -> Volume:
  shape = tuple(cfg.shape)
  if len(shape) != 3 or not all(isinstance(s, int) and s >= 2 for s in shape):
    raise ConfigError(
        f'volume.shape must be 3 integers >= 2 (Z, Y, X); got ' f'{cfg.shape!r}'
    )
  if not float(cfg.get('spacing', 0.0)) >= 0.0:
    raise ConfigError(
        f"volume.spacing must be >= 0 mm (0 = the patient's "
        f'field of view / shape); got {cfg.spacing!r}'
    )
  key = jax.random.key(cfg.seed)
  config = phantom.patient_config(key) if cfg.get('patient', False) else None
  spacing = float(cfg.get('spacing', 0.0)) or None
  return phantom.make_head_phantom(
      key,
      shape=tuple(cfg.shape),
      spacing=spacing,
      metal=cfg.metal,
      noise=cfg.noise,
      config=config,
  )


def _cranium(cfg) -> Volume:
  del cfg
  return sample_fetch.load_cranium()


def _require_path(cfg, what: str) -> str:
  if not cfg.path:
    raise ConfigError(
        f'volume.source={cfg.source!r} needs volume.path (the ' f'{what})'
    )
  return cfg.path


def _dicom(cfg) -> Volume:
  return dicom_io.read_dicom_series(
      _require_path(cfg, 'DICOM directory'),
      series_uid=cfg.series_uid or None,
      allow_non_ct=bool(cfg.get('allow_non_ct', False)),
  )


def _inv3(cfg) -> Volume:
  return invesalius.read_inv3(
      _require_path(cfg, '.inv3 file'),
      allow_non_ct=bool(cfg.get('allow_non_ct', False)),
  )


SOURCES = {
    'phantom': _phantom,
    'cranium': _cranium,
    'dicom': _dicom,
    'inv3': _inv3,
}


def load_volume(cfg: ml_collections.ConfigDict) -> Volume:
  """The volume a ``config.volume`` block describes.

  Raises:
    InputError: naming the key or file, for an unknown source, a missing
      path, an unreadable file or a volume too thin to render.
  """
  if cfg.source not in SOURCES:
    raise ConfigError(
        f'unknown volume.source {cfg.source!r}; valid: ' f'{", ".join(SOURCES)}'
    )
  volume = SOURCES[cfg.source](cfg)
  if min(volume.shape) < MIN_VOXELS_PER_AXIS:
    where = cfg.path or f'volume.source={cfg.source}'
    raise VolumeError(
        f'{where}: the volume is {" x ".join(map(str, volume.shape))} voxels '
        f'(Z x Y x X); gradients and rendering need at least '
        f'{MIN_VOXELS_PER_AXIS} voxels along every axis'
    )
  return volume
