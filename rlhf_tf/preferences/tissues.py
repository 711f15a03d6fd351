"""Tissue groups the simulated inspector judges a rendering by.

Every voxel falls in one of six groups (METAL also holds artifacts). With a
label map (the phantom) the groups come from the labels; without one
(Cranium, user DICOM) from HU thresholds, which is what a radiologist's eye
does on a CT of the head, and from anatomy: the patient is the largest
connected body of the foreground, and dense components outside it (head
holders, supports, the table) are SUPPORT, which the inspector wants hidden
like air and artifacts -- by HU alone a plastic holder is "bone".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from rlhf_tf.data.volume import Volume

GROUPS = ('teeth', 'bone', 'soft', 'air', 'metal', 'support')
TEETH, BONE, SOFT, AIR, METAL, SUPPORT = range(len(GROUPS))

# Label names (phantom and common segmentations) -> group.
_LABEL_GROUPS = {
    'enamel': TEETH,
    'dentin': TEETH,
    'pulp': TEETH,
    'teeth': TEETH,
    'cortical_bone': BONE,
    'cancellous_bone': BONE,
    'bone': BONE,
    'skull': BONE,
    'mandible': BONE,
    'maxilla': BONE,
    'soft_tissue': SOFT,
    'fat': SOFT,
    'brain': SOFT,
    'muscle': SOFT,
    'air': AIR,
    'airway': AIR,
    'background': AIR,
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
      raise ValueError(
          f'label {value} {name!r} has no tissue group; known: '
          f'{", ".join(sorted(_LABEL_GROUPS))}'
      )
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


def attribute_partial_volume(
    groups: np.ndarray, hu, bone_hu: float = 250.0, radius: int = 2
) -> np.ndarray:
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


def patient_body(
    hu, foreground_hu: float = -400.0, detach_voxels: int = 1
) -> np.ndarray:
  """Bool [Z, Y, X]: the patient, the largest connected foreground body.

  Args:
    hu: [Z, Y, X] HU.
    foreground_hu: HU above which a voxel is not air.
    detach_voxels: the foreground is eroded by this many voxels before the
      components are labelled (then the body is dilated back inside the
      foreground), so a holder touching the skin by a thin contact is not
      part of the patient.
  """
  foreground = np.asarray(hu) > foreground_hu
  core = (
      ndimage.binary_erosion(foreground, iterations=detach_voxels)
      if detach_voxels
      else foreground
  )
  labels, count = ndimage.label(core)
  if count == 0:
    return np.zeros_like(foreground)
  sizes = np.bincount(labels.reshape(-1))
  sizes[0] = 0
  body = labels == int(sizes.argmax())
  if detach_voxels:
    body = ndimage.binary_dilation(body, iterations=detach_voxels) & foreground
  return body


def mark_supports(
    groups: np.ndarray,
    hu,
    dense_hu: float = 250.0,
    min_dense_voxels: int = 20,
    **body_kwargs,
) -> np.ndarray:
  """SUPPORT for the non-patient components that hold dense voxels.

  Every foreground component outside patient_body with at least
  ``min_dense_voxels`` voxels >= dense_hu (a holder, a support, the table;
  not a speck of noise) becomes SUPPORT as a whole, its plastic or foam
  parts included. Returns a new uint8 [Z, Y, X] array.
  """
  hu = np.asarray(hu)
  foreground = hu > body_kwargs.get('foreground_hu', -400.0)
  outside = foreground & ~patient_body(hu, **body_kwargs)
  labels, count = ndimage.label(outside)
  if count == 0:
    return groups
  dense = np.bincount(
      labels.reshape(-1),
      weights=(hu >= dense_hu).reshape(-1),
      minlength=count + 1,
  )
  dense[0] = 0
  supports = np.flatnonzero(dense >= min_dense_voxels)
  out = groups.copy()
  out[np.isin(labels, supports)] = SUPPORT
  return out


def tissue_groups(volume: Volume) -> np.ndarray:
  """Groups from the labels when they all have known names (with partial
  volume attributed, see attribute_partial_volume), else from HU and
  anatomy (groups_from_hu, then mark_supports)."""
  if volume.labels is not None and all(
      name in _LABEL_GROUPS for _, name in volume.label_names
  ):
    return attribute_partial_volume(groups_from_labels(volume), volume.hu)
  return mark_supports(groups_from_hu(volume.hu), volume.hu)
