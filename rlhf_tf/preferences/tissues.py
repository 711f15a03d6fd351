"""Tissue groups the simulated inspector judges a rendering by.

Every voxel falls in one of five groups (METAL also holds artifacts). With a
label map (the phantom) the groups come from the labels; without one
(Cranium, user DICOM) from HU thresholds, which is what a radiologist's eye
does on a CT of the head.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

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


def attribute_partial_volume(groups: np.ndarray, hu, bone_hu: float = 250.0,
                             radius: int = 2) -> np.ndarray:
  """Re-assigns dense voxels of soft tissue / air to what makes them dense.

  A label map is the anatomy; the image is blurred, so the soft-tissue voxels
  next to bone carry bone-like HU and are where a bone TF draws the surface.
  An inspector sees them as bone (or teeth, when teeth are nearer). Dense
  soft/air voxels far from any bone or teeth are artifacts (metal streaks)
  and join the METAL (artifact) group.

  Args:
    groups: uint8 [Z, Y, X] groups from the labels.
    hu: [Z, Y, X] HU.
    bone_hu: HU above which a soft/air voxel is "dense".
    radius: voxels; how far a dense voxel may lie from bone / teeth.
  """
  hu = np.asarray(hu)
  dense = ((groups == SOFT) | (groups == AIR)) & (hu >= bone_hu)
  if not dense.any():
    return groups
  size = 2 * radius + 1
  near_teeth = ndimage.maximum_filter(groups == TEETH, size=size)
  near_bone = ndimage.maximum_filter(groups == BONE, size=size)
  out = groups.copy()
  out[dense & near_bone] = BONE
  out[dense & near_teeth] = TEETH  # Teeth win where both are near.
  out[dense & ~near_bone & ~near_teeth] = METAL
  return out


def tissue_groups(volume: Volume) -> np.ndarray:
  """Groups from the labels when they all have known names (with partial
  volume attributed, see attribute_partial_volume), else from HU."""
  if volume.labels is not None and all(
      name in _LABEL_GROUPS for _, name in volume.label_names):
    return attribute_partial_volume(groups_from_labels(volume), volume.hu)
  return groups_from_hu(volume.hu)
