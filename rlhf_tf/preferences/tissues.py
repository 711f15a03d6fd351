"""Tissue groups the simulated inspector judges a rendering by.

Every voxel falls in one of five groups. With a label map (the phantom) the
groups come from the labels; without one (Cranium, user DICOM) from HU
thresholds, which is what a radiologist's eye does on a CT of the head.
"""

from __future__ import annotations

import numpy as np

from rlhf_tf.data.volume import Volume

GROUPS = ('teeth', 'bone', 'soft', 'air', 'metal')
TEETH, BONE, SOFT, AIR, METAL = range(len(GROUPS))

# Label names (phantom and common segmentations) -> group.
_LABEL_GROUPS = {
    'enamel': TEETH, 'dentin': TEETH, 'pulp': TEETH, 'teeth': TEETH,
    'cortical_bone': BONE, 'cancellous_bone': BONE, 'bone': BONE,
    'skull': BONE, 'mandible': BONE, 'maxilla': BONE,
    'soft_tissue': SOFT, 'fat': SOFT, 'brain': SOFT, 'muscle': SOFT,
    'air': AIR, 'airway': AIR, 'background': AIR,
    'metal': METAL,
}

# HU thresholds for volumes without labels: [low, high) per group. Enamel and
# dentin are the only tissues above ~1800 HU in a head CT (dense cortical bone
# overlaps dentin, which the thresholds accept as an approximation).
HU_THRESHOLDS = (
    (AIR, -np.inf, -400.0),
    (SOFT, -400.0, 250.0),
    (BONE, 250.0, 1800.0),
    (TEETH, 1800.0, 3050.0),
    (METAL, 3050.0, np.inf),
)


def groups_from_labels(volume: Volume) -> np.ndarray:
  """uint8 [Z, Y, X] group per voxel from the label map.

  Raises:
    ValueError: if a label value has a name not in the known groups.
  """
  labels = np.asarray(volume.labels)
  lut = np.full(int(labels.max()) + 1, AIR, np.uint8)
  for value, name in volume.label_names:
    if name not in _LABEL_GROUPS:
      raise ValueError(f'label {value} {name!r} has no tissue group; known: '
                       f'{", ".join(sorted(_LABEL_GROUPS))}')
    if value <= labels.max():
      lut[value] = _LABEL_GROUPS[name]
  return lut[labels]


def groups_from_hu(hu) -> np.ndarray:
  """uint8 [Z, Y, X] group per voxel from HU_THRESHOLDS."""
  hu = np.asarray(hu)
  out = np.zeros(hu.shape, np.uint8)
  for group, low, high in HU_THRESHOLDS:
    out[(hu >= low) & (hu < high)] = group
  return out


def tissue_groups(volume: Volume) -> np.ndarray:
  """Groups from the labels when they all have known names, else from HU."""
  if volume.labels is not None and all(
      name in _LABEL_GROUPS for _, name in volume.label_names):
    return groups_from_labels(volume)
  return groups_from_hu(volume.hu)
