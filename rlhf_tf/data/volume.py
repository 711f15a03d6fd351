"""The CT volume pytree every module of rlhf_tf consumes.

Conventions (used everywhere in the project):
- ``hu``: float32 array [Z, Y, X] in Hounsfield units. Z is the slice axis
  (DICOM slice order after sorting along the slice normal), Y the image rows,
  X the image columns.
- ``spacing``: (3,) float, millimetres per voxel along (Z, Y, X), i.e. the
  array-axis order: (slice spacing, row spacing, column spacing).
- ``origin``: (3,) float, millimetres, patient (x, y, z) coordinates of the
  centre of voxel [0, 0, 0] -- the DICOM ImagePositionPatient of the first
  slice.
- ``orientation``: 6 direction cosines (row direction, column direction) as in
  DICOM ImageOrientationPatient; (1, 0, 0, 0, 1, 0) is a plain axial stack.
- ``labels``: optional int32 array [Z, Y, X]; ``label_names`` maps each label
  value to its tissue name as a tuple of (value, name) pairs.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.struct
import numpy as np

from rlhf_tf.input_error import InputError

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class VolumeError(InputError):
  """Voxels or geometry that cannot make a faithful Volume."""


@flax.struct.dataclass
class Volume:
  """A CT volume in Hounsfield units with its geometry and optional labels."""

  hu: Any  # [Z, Y, X] float32, HU
  spacing: Any  # (3,) mm along (Z, Y, X)
  origin: Any  # (3,) mm, patient (x, y, z) of voxel [0, 0, 0]
  labels: Optional[Any] = None  # [Z, Y, X] int32 or None
  label_names: tuple = flax.struct.field(pytree_node=False, default=())
  orientation: tuple = flax.struct.field(pytree_node=False, default=AXIAL)
  name: str = flax.struct.field(pytree_node=False, default='volume')
  modality: str = flax.struct.field(pytree_node=False, default='CT')

  @property
  def shape(self) -> tuple[int, int, int]:
    return tuple(int(s) for s in self.hu.shape)

  @property
  def extent_mm(self) -> np.ndarray:
    """(3,) physical size along (Z, Y, X) in mm (voxel count x spacing)."""
    return np.asarray(self.shape, np.float64) * np.asarray(
        self.spacing, np.float64
    )

  def label_value(self, name: str) -> int:
    """The integer label of tissue ``name``; KeyError listing the known ones."""
    for value, label_name in self.label_names:
      if label_name == name:
        return int(value)
    known = ', '.join(n for _, n in self.label_names) or '(no labels)'
    raise KeyError(f'unknown label {name!r}; this volume has: {known}')

  def describe(self) -> dict:
    """Plain facts about the volume, for logs and summaries."""
    hu = np.asarray(self.hu)
    facts = {
        'name': self.name,
        'modality': self.modality,
        'shape_zyx': list(self.shape),
        'spacing_mm_zyx': [float(s) for s in np.asarray(self.spacing)],
        'origin_mm_xyz': [float(s) for s in np.asarray(self.origin)],
        'extent_mm_zyx': [float(s) for s in self.extent_mm],
        'hu_min': float(hu.min()),
        'hu_max': float(hu.max()),
        'hu_mean': float(hu.mean()),
    }
    if self.labels is not None:
      labels = np.asarray(self.labels)
      facts['labels'] = {
          name: int((labels == value).sum()) for value, name in self.label_names
      }
    return facts


def make_volume(
    hu,
    spacing,
    origin=(0.0, 0.0, 0.0),
    labels=None,
    label_names=(),
    orientation=AXIAL,
    name='volume',
    modality='CT',
) -> Volume:
  """Builds a validated Volume from array-likes (numpy, kept on host).

  Raises:
    VolumeError (an InputError): naming the problem, for a non-3D or empty
      array, non-finite HU, non-positive or non-finite spacing, or a label
      map of another shape.
  """
  hu = np.asarray(hu)
  if hu.ndim != 3 or min(hu.shape) < 1:
    raise VolumeError(
        f'volume must be a non-empty 3D [Z, Y, X] array, got '
        f'shape {hu.shape}'
    )
  hu = hu.astype(np.float32, copy=False)
  if not np.isfinite(hu).all():
    bad = int((~np.isfinite(hu)).sum())
    raise VolumeError(f'volume {name!r} has {bad} non-finite (NaN/inf) voxels')
  spacing = np.asarray(spacing, np.float64).reshape(-1)
  if (
      spacing.shape != (3,)
      or not np.all(np.isfinite(spacing))
      or np.any(spacing <= 0)
  ):
    raise VolumeError(
        f'spacing must be 3 positive finite mm values (z, y, x), '
        f'got {spacing.tolist()}'
    )
  origin = np.asarray(origin, np.float64).reshape(-1)
  if origin.shape != (3,) or not np.all(np.isfinite(origin)):
    raise VolumeError(
        f'origin must be 3 finite mm values (x, y, z), got '
        f'{origin.tolist()}'
    )
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != hu.shape:
      raise VolumeError(
          f'label map shape {labels.shape} differs from volume '
          f'shape {hu.shape}'
      )
    labels = labels.astype(np.int32, copy=False)
  orientation = tuple(float(c) for c in orientation)
  if len(orientation) != 6:
    raise VolumeError(
        f'orientation needs 6 direction cosines, got ' f'{len(orientation)}'
    )
  label_names = tuple((int(v), str(n)) for v, n in label_names)
  return Volume(
      hu=hu,
      spacing=spacing,
      origin=origin,
      labels=labels,
      label_names=label_names,
      orientation=orientation,
      name=name,
      modality=modality,
  )
