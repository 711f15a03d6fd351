"""Procedural, deterministic CBCT-like dental head phantom with a label map.

``make_head_phantom(key)`` paints analytic anatomy (head outline with a fat
layer, cranial base with brain, maxilla with sinuses and palate, zygomatic
arches, U-shaped mandible, 2 x 14 teeth with enamel, dentin, pulp and roots,
airway, optional metal fillings) into the paper's field of view: chin to
zygomatic arch, 109.4 x 84.2 x 109.4 mm (Z, Y, X) = 547 x 421 x 547 voxels of
0.2 mm. Then come the scanner effects (``phantom_scanner``): metal streaks,
Gaussian blur (the system PSF plus the voxel footprint), correlated Gaussian
noise and the CT value range clip. The anatomy is ``phantom_anatomy``'s,
painted by ``phantom_shapes``.

Everything is built slab by slab along Z into preallocated float32 HU and
int32 label arrays (peak memory ~ 2 x 4 bytes per voxel + O(slab)).

HU of the materials (``PhantomConfig`` defaults, before artifacts): air and
airway -1000, fat -100, soft tissue 40, brain 30, pulp 40, cancellous bone
400, cortical bone 1500, dentin 1750, enamel 2850, metal 4000. The output is
clipped to ``hu_clip`` = (-1024, 3071), the 12-bit range of clinical CT, so
metal (and the brightest streaks) saturate at 3071 HU as on real scanners.

Randomness: one jax PRNG key, split by purpose (geometry, teeth, metal,
noise); each part seeds a numpy generator, and the noise of slice k comes from
(noise key, k) only. Same key + same shape + same config -> bitwise the same
volume, whatever the slab size.

Patients: ``patient_config(key)`` draws the build of the patient a key stands
for (head size and shape, arch, missing and third-molar teeth, fillings,
noise, blur, streaks, field of view and so voxel size), so the phantoms of a
dataset differ as patients do (``make_head_phantom(key, shape,
config=patient_config(key))``); the default config is one reference head.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import numpy as np

from rlhf_tf.data import phantom_anatomy, phantom_scanner
from rlhf_tf.data import phantom_shapes as shapes
from rlhf_tf.data.volume import make_volume, Volume

LABELS = shapes.LABELS
LABEL_VALUES = {name: value for value, name in LABELS}
# Label groups that structure_mask answers from the label map alone.
STRUCTURES = {
    'teeth': ('enamel', 'dentin', 'pulp'),
    'dental': ('enamel', 'dentin', 'pulp', 'metal'),
    'bone': ('cancellous_bone', 'cortical_bone'),
    'air_all': ('air', 'airway'),
    'soft': ('soft_tissue', 'fat', 'brain', 'pulp'),
}
# Anatomical regions: bone voxels inside the region's analytic envelope.
REGIONS = ('mandible', 'maxilla', 'jaw', 'zygoma', 'skull', 'head')

# Plausible median HU per label of a default phantom (blur, noise, metal),
# from CBCT literature values; pulp sits well above water because its thin
# canal is partial-volumed with the surrounding dentin.
HU_RANGES = {
    'air': (-1024, -950),
    'soft_tissue': (0, 80),
    'fat': (-150, -50),
    'brain': (0, 80),
    'cancellous_bone': (300, 500),
    'cortical_bone': (1200, 1800),
    'enamel': (2500, 3000),
    'dentin': (1500, 2000),
    'pulp': (-50, 800),
    'airway': (-1024, -900),
    'metal': (3000, 3071),
}

FOV_MM_ZYX = (547 * 0.2, 421 * 0.2, 547 * 0.2)
FOV_CENTER_XYZ = (0.0, -4.0, 0.5 * 547 * 0.2)  # mm; z = 0 below the chin.
PAPER_SHAPE = (547, 421, 547)


@dataclasses.dataclass(frozen=True)
class PhantomConfig:
  """Tunables of the phantom (HU, mm, counts)."""

  hu_air: float = -1000.0
  hu_soft_tissue: float = 40.0
  hu_fat: float = -100.0
  hu_brain: float = 30.0
  hu_cancellous: float = 400.0
  hu_cortical: float = 1500.0
  hu_enamel: float = 2850.0
  hu_dentin: float = 1750.0
  hu_pulp: float = 40.0
  hu_airway: float = -1000.0
  hu_metal: float = 4000.0
  hu_clip: tuple = (-1024.0, 3071.0)  # Output range (12-bit CT).
  noise_sigma_hu: float = 40.0  # Std of the final noise.
  noise_corr_mm: float = 0.25  # In-plane correlation length (Gaussian std).
  blur_mm: float = 0.3  # System PSF std, isotropic.
  # The PSF is never sharper than this many voxels: a reconstruction spreads
  # an edge over ~2 voxels at any resolution, which makes the boundary arcs
  # of the JH (Kindlmann's arches) instead of columns at pure-material HU.
  blur_min_voxels: float = 0.7
  partial_volume: bool = True  # Add the voxel footprint (std = 1/sqrt(12)).
  streak_hu: float = 900.0  # Peak amplitude of a metal streak at the metal.
  streak_lines: int = 10  # Streaks through each filling.
  streak_decay_mm: float = 15.0  # Amplitude ~ decay / (r + decay).
  dark_band_hu: float = 600.0  # Beam-hardening band between two fillings.
  num_fillings: int = 3
  missing_tooth_prob: float = 0.08
  jitter_mm: float = 1.5  # Std of the anatomical jitter.
  # The patient's build (see phantom_anatomy.sample_anatomy); patient_config
  # draws these per seed, the defaults are the reference head.
  head_scale: float = 1.0
  head_width: float = 1.0
  face_depth_mm: float = 0.0
  arch_radius_mm: float = 22.0
  arch_flare_deg: float = 17.0
  third_molars: tuple = ()  # Quadrants with an extra molar ('lower_left').
  # Field of view relative to the paper's (Z, Y, X), when no spacing is
  # given: the voxel size is then fov_scale * FOV / shape.
  fov_scale: tuple = (1.0, 1.0, 1.0)
  slab: int = 32  # Slices per slab (memory only; results do not depend on it).


# What patient_config draws (uniform ranges), so that phantoms differ like
# the patients of a CBCT study: build, dentition and scanner.
PATIENT_RANGES = {
    'head_scale': (0.9, 1.1),
    'head_width': (0.9, 1.1),
    'face_depth_mm': (-4.0, 4.0),
    'arch_radius_mm': (19.0, 25.0),
    'arch_flare_deg': (11.0, 23.0),
    'missing_tooth_prob': (0.0, 0.25),
    'noise_sigma_hu': (20.0, 70.0),
    'noise_corr_mm': (0.2, 0.4),
    'blur_mm': (0.2, 0.5),
    'streak_hu': (500.0, 1300.0),
    'fov_scale': (0.85, 1.15),
}
MAX_FILLINGS = 8
THIRD_MOLAR_PROB = 0.35  # Per quadrant.
QUADRANTS = ('lower_left', 'lower_right', 'upper_left', 'upper_right')
_PATIENT_TAG = 0x9A7  # fold_in tag of the patient key (keeps the old splits).


def patient_config(
    key, base: Optional['PhantomConfig'] = None
) -> 'PhantomConfig':
  """The PhantomConfig of the patient a key stands for.

  Head size and shape, arch shape, missing and extra (third-molar) teeth,
  number of metal fillings (0..MAX_FILLINGS), noise and blur level, metal
  streak strength and field of view (hence voxel size) are drawn from
  fold_in(key, tag), uniformly over PATIENT_RANGES; the anatomy's jitter,
  tooth sizes and noise realisation still come from the key's own splits.
  Deterministic: the same key gives the same patient.
  """
  rng = _np_rng(jax.random.fold_in(key, _PATIENT_TAG))
  r = {
      name: float(rng.uniform(lo, hi))
      for name, (lo, hi) in PATIENT_RANGES.items()
      if name != 'fov_scale'
  }
  lo, hi = PATIENT_RANGES['fov_scale']
  fov = rng.uniform(lo, hi, 3)
  fov[0] = fov[2]  # Cylindrical CBCT FOVs: the same height and diameter.
  r['fov_scale'] = tuple(float(f) for f in fov)
  r['num_fillings'] = int(rng.integers(0, MAX_FILLINGS + 1))
  r['third_molars'] = tuple(
      q for q in QUADRANTS if rng.random() < THIRD_MOLAR_PROB
  )
  return dataclasses.replace(base or PhantomConfig(), **r)


def label_hu_table(config: PhantomConfig) -> np.ndarray:
  """(11,) float32 HU of each label value."""
  c = config
  return np.array(
      [
          c.hu_air,
          c.hu_soft_tissue,
          c.hu_fat,
          c.hu_brain,
          c.hu_cancellous,
          c.hu_cortical,
          c.hu_enamel,
          c.hu_dentin,
          c.hu_pulp,
          c.hu_airway,
          c.hu_metal,
      ],
      np.float32,
  )


def _key_words(key) -> list:
  """The uint32 words of a jax key (typed or raw), as Python ints."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return [int(w) for w in np.asarray(key, np.uint32).reshape(-1)]


def _np_rng(key) -> np.random.Generator:
  """A numpy generator seeded by the bits of a jax key."""
  return np.random.default_rng(_key_words(key))


def _split(key):
  """Independent keys per purpose, so metal=False or noise=False never
  changes the anatomy."""
  geom, teeth, metal, noise = jax.random.split(key, 4)
  return {'geom': geom, 'teeth': teeth, 'metal': metal, 'noise': noise}


def sample_anatomy(
    key, config: Optional[PhantomConfig] = None
) -> phantom_anatomy.HeadAnatomy:
  """The anatomy make_head_phantom(key, ...) paints (for region queries)."""
  c = config or PhantomConfig()
  k = _split(key)
  return phantom_anatomy.sample_anatomy(
      _np_rng(k['geom']),
      _np_rng(k['teeth']),
      _np_rng(k['metal']),
      c.jitter_mm,
      c.missing_tooth_prob,
      c.num_fillings,
      head_scale=c.head_scale,
      head_width=c.head_width,
      face_depth_mm=c.face_depth_mm,
      arch_radius_mm=c.arch_radius_mm,
      arch_flare_deg=c.arch_flare_deg,
      third_molars=tuple(c.third_molars),
  )


def phantom_geometry(
    shape: Sequence[int], spacing=None, fov_scale=(1.0, 1.0, 1.0)
):
  """(spacing (3,) mm along Z, Y, X; origin (3,) mm patient x, y, z).

  The field of view stays centred on the paper's; without spacing it is
  the paper's FOV times fov_scale (Z, Y, X): spacing = FOV * fov_scale /
  shape.
  """
  shape = tuple(int(s) for s in shape)
  if len(shape) != 3 or min(shape) < 1:
    raise ValueError(f'shape must be 3 positive ints (Z, Y, X), got {shape}')
  if spacing is None:
    spacing = (
        np.asarray(FOV_MM_ZYX)
        * np.asarray(fov_scale, np.float64)
        / np.asarray(shape)
    )
  spacing = np.broadcast_to(np.asarray(spacing, np.float64), (3,)).copy()
  if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
    raise ValueError(f'spacing must be positive mm, got {spacing.tolist()}')
  extent_xyz = (np.asarray(shape) * spacing)[::-1]
  first_xyz = np.asarray(FOV_CENTER_XYZ) - 0.5 * extent_xyz
  origin = first_xyz + 0.5 * spacing[::-1]  # Centre of voxel [0, 0, 0].
  return spacing, origin


def _axes_mm(shape, spacing, origin):
  """Voxel-centre coordinate vectors (z, y, x) in mm, float32."""
  return tuple(
      (origin[2 - a] + spacing[a] * np.arange(shape[a])).astype(np.float32)
      for a in range(3)
  )


def make_head_phantom(
    key,
    shape=(128, 128, 128),
    spacing=None,
    metal: bool = True,
    noise: bool = True,
    config: Optional[PhantomConfig] = None,
) -> Volume:
  """A CBCT-like dental head volume with its tissue label map.

  Args:
    key: jax PRNG key (typed or raw uint32); everything random derives from it.
    shape: (Z, Y, X) voxels; (547, 421, 547) gives the paper's 0.2 mm grid
      (about 1 GB: 4-byte HU and labels, built slab by slab).
    spacing: (3,) mm along (Z, Y, X) or a scalar; None = FOV * fov_scale /
      shape. The field of view is shape * spacing, centred on the paper's.
    metal: paint metal fillings and their streak artifacts.
    noise: add correlated Gaussian noise (blur is always applied unless the
      config switches it off: blur_mm=0, partial_volume=False).
    config: PhantomConfig; None = the reference head; patient_config(key)
      = the patient this key stands for (a dataset's phantoms).

  Returns:
    Volume with hu float32 [Z, Y, X] in [hu_clip], labels int32 (LABELS).
  """
  c = config or PhantomConfig()
  spacing, origin = phantom_geometry(shape, spacing, c.fov_scale)
  shape = tuple(int(s) for s in shape)
  keys = _split(key)
  anat = sample_anatomy(key, c)
  z, y, x = _axes_mm(shape, spacing, origin)
  maps = shapes.PlaneMaps(anat, y, x)
  planes = (
      phantom_scanner.streak_planes(
          anat, maps, _np_rng(jax.random.fold_in(keys['metal'], 1)), c
      )
      if metal
      else []
  )
  lut = label_hu_table(c)
  hu = np.empty(shape, np.float32)
  labels = np.empty(shape, np.int32)
  slab = max(int(c.slab), 1)
  for k0 in range(0, shape[0], slab):
    k1 = min(k0 + slab, shape[0])
    lab = shapes.paint_slab(anat, maps, z[k0:k1], metal)
    labels[k0:k1] = lab
    hu[k0:k1] = lut[lab]
    if planes:
      phantom_scanner.add_streaks(
          hu[k0:k1], anat.local_z(z[k0:k1]), planes, float(spacing[0])
      )
  noise_words = _key_words(keys['noise']) if noise else None
  phantom_scanner.blur_noise_clip(hu, spacing, c, noise_words, slab)
  return make_volume(
      hu,
      spacing,
      origin,
      labels=labels,
      label_names=LABELS,
      name='head_phantom',
      modality='CT',
  )


def structure_mask(
    volume: Volume,
    name: str,
    anatomy: Optional[phantom_anatomy.HeadAnatomy] = None,
    slab: int = 32,
) -> np.ndarray:
  """Bool [Z, Y, X] mask of a label ('enamel'), a label group (STRUCTURES:
  'teeth', 'bone', ...) or the bone of an anatomical region (REGIONS:
  'mandible', 'maxilla', 'jaw', 'zygoma', 'skull'; needs the anatomy from
  sample_anatomy(key) of the key the phantom was made with)."""
  if volume.labels is None:
    raise ValueError('volume has no label map')
  labels = np.asarray(volume.labels)
  if name in LABEL_VALUES:
    return labels == LABEL_VALUES[name]
  if name in STRUCTURES:
    return np.isin(labels, [LABEL_VALUES[n] for n in STRUCTURES[name]])
  if name not in REGIONS:
    raise KeyError(
        f'unknown structure {name!r}; labels: '
        f'{", ".join(LABEL_VALUES)}; groups: '
        f'{", ".join(STRUCTURES)}; regions: {", ".join(REGIONS)}'
    )
  if anatomy is None:
    raise ValueError(f'region {name!r} needs anatomy=sample_anatomy(key)')
  spacing = np.asarray(volume.spacing, np.float64)
  z, y, x = _axes_mm(volume.shape, spacing, np.asarray(volume.origin))
  maps = shapes.PlaneMaps(anatomy, y, x)
  if name == 'head':
    out = labels > 0
  else:
    out = np.isin(labels, (shapes.CANCELLOUS, shapes.CORTICAL))
  for k0 in range(0, volume.shape[0], slab):
    k1 = min(k0 + slab, volume.shape[0])
    out[k0:k1] &= shapes.region_slab(anatomy, maps, z[k0:k1], name)
  return out
