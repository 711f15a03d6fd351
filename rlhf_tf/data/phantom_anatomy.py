"""The sampled anatomy of the procedural CBCT head phantom: its geometry.

Patient coordinates in mm, DICOM convention: x towards the patient's left,
y posterior, z superior; z = 0 is the bottom of the field of view, below the
chin. ``sample_anatomy`` draws one head (jaw arches, mandible and head
profiles, present and filled teeth); ``phantom_shapes`` paints it.

The jaws use curvilinear arch coordinates (s, n) of a U-shaped curve (a
circular arc in front continued by two straight limbs that diverge backwards):
s = signed arc length in mm (0 at the midline, > 0 on the patient's left),
n = signed distance in mm from the curve (> 0 buccal, i.e. outwards).

Sizes are adult textbook values (tooth crowns and roots, mandible height),
lightly compressed front-to-back so that lips and mandibular rami both fit
the 84 mm deep field of view of the paper's CBCT scans.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# Teeth from the midline backwards: mesiodistal width W, buccolingual depth
# B, crown height Hc, root length Hr (mm), number of roots, crown tip angle
# (degrees, crown towards the lips/cheeks).
LOWER_TEETH = (
    (5.0, 6.0, 9.0, 12.5, 1, 20),
    (5.5, 6.3, 9.5, 14.0, 1, 18),
    (7.0, 7.5, 11.0, 16.0, 1, 10),
    (7.0, 7.5, 8.5, 14.0, 1, 5),
    (7.2, 8.0, 8.0, 14.5, 1, 3),
    (11.0, 10.5, 7.5, 13.0, 2, 0),
    (10.5, 10.0, 7.0, 13.0, 2, 0),
)
UPPER_TEETH = (
    (8.5, 7.0, 10.5, 13.0, 1, 22),
    (6.5, 6.0, 9.0, 13.0, 1, 20),
    (7.5, 8.0, 10.0, 17.0, 1, 12),
    (7.0, 9.0, 8.5, 14.0, 1, 5),
    (6.5, 9.0, 7.5, 14.0, 1, 3),
    (10.0, 11.0, 7.5, 12.5, 2, 0),
    (9.0, 11.0, 7.0, 12.0, 2, 0),
)
FILLABLE = (3, 4, 5, 6, 7)  # Premolars and molars carry the fillings.
# Third molars (wisdom teeth), the extra teeth some patients have: a row 7
# after the second molars, half buried in the rising ramus as when impacted.
LOWER_THIRD_MOLAR = (10.0, 9.5, 6.5, 11.0, 2, 0)
UPPER_THIRD_MOLAR = (8.5, 10.0, 6.5, 11.0, 2, 0)


@dataclasses.dataclass(frozen=True)
class Arch:
  """U curve: arc of radius R (mm) centred at (0, yc), limbs diverging by
  phi (rad) from the +y axis."""

  radius: float
  yc: float
  phi: float


@dataclasses.dataclass(frozen=True)
class Tooth:
  """One tooth in its jaw's arch coordinates (all lengths mm)."""

  up: int  # +1 lower jaw (crown points up), -1 upper jaw.
  kind: int  # 0 central incisor ... 6 second molar, 7 third molar.
  s: float  # Arch position of the tooth axis.
  width: float
  depth: float
  crown: float
  root: float
  roots: int
  tilt: float  # rad
  z_cej: float  # z of the cemento-enamel junction (crown/root border).
  filled: bool
  xy: tuple  # (x, y) of the tooth axis at the CEJ, for bounding boxes.


@dataclasses.dataclass(frozen=True)
class HeadAnatomy:
  """All sampled geometry of one phantom head (mm, patient coordinates)."""

  lower: Arch
  upper: Arch
  z_occ: float  # Occlusal plane.
  teeth: tuple  # Tooth, lower then upper.
  mand_s: tuple  # |s| knots of the mandible profiles.
  mand_top: tuple
  mand_bottom: tuple
  mand_halfwidth: tuple
  mand_end: float  # |s| of the condyles.
  max_end: float  # |s| of the maxillary tuberosities.
  palate_y: float  # Posterior end of the hard palate.
  face_z: tuple  # Head outline knots: z, anterior y, lateral half-width.
  face_y: tuple
  face_a: tuple
  pharynx_y: float
  pharynx_top: float
  shift: tuple = (0.0, 0.0, 0.0)  # (x, y, z) mm of the head in the FOV.
  scale: float = 1.0  # Head size factor.

  def local_z(self, z):
    """Patient z (mm) -> the anatomy's own frame (shifted and scaled)."""
    return ((np.asarray(z, np.float32) - self.shift[2]) / self.scale).astype(
        np.float32
    )


def arch_coords(arch: Arch, y, x):
  """Arch coordinates (s, n) in mm of points y (Y, 1), x (1, X) -> (Y, X)."""
  dx = np.broadcast_to(x, np.broadcast_shapes(x.shape, y.shape))
  dy = y - np.float32(arch.yc)
  ax = np.abs(dx)
  alpha = np.arctan2(ax, -dy)  # 0 at the front, pi/2 at the side.
  a_end = math.pi / 2 - arch.phi
  sp, cp = math.sin(arch.phi), math.cos(arch.phi)
  px = ax - arch.radius * math.sin(a_end)
  py = dy + arch.radius * math.cos(a_end)
  on_arc = alpha <= a_end
  s = np.where(
      on_arc, arch.radius * alpha, arch.radius * a_end + px * sp + py * cp
  )
  n = np.where(on_arc, np.hypot(ax, dy) - arch.radius, px * cp - py * sp)
  sign = np.where(dx >= 0, 1.0, -1.0).astype(np.float32)
  return (sign * s).astype(np.float32), n.astype(np.float32)


def arch_point(arch: Arch, s: float):
  """(x, y, normal_x, normal_y) of the curve at arc length s (mm)."""
  sign, s = (1.0 if s >= 0 else -1.0), abs(s)
  a_end = math.pi / 2 - arch.phi
  if s <= arch.radius * a_end:
    a = s / arch.radius
    return (
        sign * arch.radius * math.sin(a),
        arch.yc - arch.radius * math.cos(a),
        sign * math.sin(a),
        -math.cos(a),
    )
  u = s - arch.radius * a_end
  return (
      sign * (arch.radius * math.sin(a_end) + u * math.sin(arch.phi)),
      arch.yc - arch.radius * math.cos(a_end) + u * math.cos(arch.phi),
      sign * math.cos(arch.phi),
      -math.sin(arch.phi),
  )


def _sample_teeth(
    arch, table, up, z_occ, rng, missing_prob, extra_row=None, extra_sides=()
):
  """Teeth of one jaw along its arch, left (s < 0) and right (s > 0).

  extra_row: the size row of an extra (third) molar, placed behind the
  second molar on the sides in extra_sides (-1.0 and / or 1.0). Returns
  (teeth, arch length of the regular rows, arch length with the extra
  molar), both of the right side (s > 0), as the jaw bones are symmetric.
  """
  teeth = []
  regular = full = 0.0
  for sign in (-1.0, 1.0):
    s = 0.15
    rows = list(enumerate(table))
    if extra_row is not None and sign in extra_sides:
      rows.append((len(table), extra_row))
    for kind, (w, b, hc, hr, roots, tilt) in rows:
      if kind == len(table):
        regular = s
      jit = 1.0 + 0.04 * rng.standard_normal(4)
      w, b, hc, hr = w * jit[0], b * jit[1], hc * jit[2], hr * jit[3]
      center = sign * (s + w / 2)
      s += w + 0.2  # Contact gap.
      if rng.random() < missing_prob:
        continue
      z_cej = z_occ - up * (hc + 0.2 + 0.3 * abs(rng.standard_normal()))
      x, y, _, _ = arch_point(arch, center)
      teeth.append(
          Tooth(
              up,
              kind,
              center,
              w,
              b,
              hc,
              hr,
              roots,
              math.radians(tilt + rng.normal(0, 2)),
              z_cej,
              False,
              (x, y),
          )
      )
    if len(rows) == len(table):
      regular = s
    full = s
  return teeth, regular, full


def sample_anatomy(
    rng_geom: np.random.Generator,
    rng_teeth: np.random.Generator,
    rng_metal: np.random.Generator,
    jitter_mm: float = 1.5,
    missing_prob: float = 0.08,
    num_fillings: int = 3,
    head_scale: float = 1.0,
    head_width: float = 1.0,
    face_depth_mm: float = 0.0,
    arch_radius_mm: float = 22.0,
    arch_flare_deg: float = 17.0,
    third_molars: tuple = (),
) -> HeadAnatomy:
  """Draws one head: jittered jaw geometry, present teeth and filled teeth.

  The patient's build (PhantomConfig, drawn per seed by
  phantom.patient_config): head_scale (overall size factor), head_width
  (lateral half-width factor of the head outline), face_depth_mm (anterior
  profile moved forwards, > 0, or back), arch_radius_mm and arch_flare_deg
  (the U of the dental arches: front radius and divergence of the limbs),
  third_molars: the quadrants with an extra molar, of 'lower_left',
  'lower_right', 'upper_left', 'upper_right'.
  """
  g = lambda sd=1.0: float(jitter_mm * sd * rng_geom.standard_normal())
  z_occ = 47.0 + g()
  lower = Arch(
      arch_radius_mm + g(0.6),
      -6.0 + g(0.6),
      math.radians(arch_flare_deg + 2 * g(0.5)),
  )
  upper = Arch(lower.radius + 1.5, lower.yc - 1.0, lower.phi - 0.05)
  side = {'left': 1.0, 'right': -1.0}
  extra = {
      jaw: tuple(
          side[q.split('_')[1]] for q in third_molars if q.startswith(jaw)
      )
      for jaw in ('lower', 'upper')
  }
  low, s_low, _ = _sample_teeth(
      lower,
      LOWER_TEETH,
      1,
      z_occ,
      rng_teeth,
      missing_prob,
      LOWER_THIRD_MOLAR,
      extra['lower'],
  )
  upp, _, s_upp = _sample_teeth(
      upper,
      UPPER_TEETH,
      -1,
      z_occ,
      rng_teeth,
      missing_prob,
      UPPER_THIRD_MOLAR,
      extra['upper'],
  )
  teeth = low + upp
  candidates = [i for i, t in enumerate(teeth) if t.kind in FILLABLE]
  pick = rng_metal.permutation(len(candidates))[: max(num_fillings, 0)]
  filled = {candidates[i] for i in pick}
  teeth = tuple(
      dataclasses.replace(t, filled=i in filled) for i, t in enumerate(teeth)
  )
  crest = z_occ - 8.0 - 1.5  # Alveolar crest below the lower crowns.
  menton = 12.0 + g()
  s_r0 = s_low + 4.0  # Anterior border of the ramus.
  mand_s = (
      0.0,
      14.0,
      s_low - 4.0,
      s_low,
      s_r0 + 2.0,
      s_r0 + 7.0,
      s_r0 + 12.0,
      s_r0 + 16.0,
      s_r0 + 21.0,
      s_r0 + 24.0,
  )
  mand_top = (
      crest + 1.0,
      crest,
      crest,
      crest + 0.5,
      crest + 8.0,
      78.0 + g(),
      69.0,
      77.0,
      84.0 + g(),
      82.0,
  )
  mand_bottom = (
      menton,
      menton + 1.0,
      menton + 4.0,
      menton + 5.0,
      menton + 6.0,
      menton + 7.0,
      menton + 9.0,
      menton + 14.0,
      menton + 40.0,
      menton + 55.0,
  )
  mand_halfwidth = (7.5, 6.5, 6.5, 6.5, 5.0, 3.8, 3.6, 3.8, 4.5, 4.5)
  molar_y = max(
      (t.xy[1] for t in upp if t.kind < len(UPPER_TEETH)), default=10.0
  )
  face_z = (0.0, 6.0, 12.0, 20.0, 30.0, 40.0, 47.0, 55.0, 63.0, 75.0, 110.0)
  face_y = tuple(
      v - face_depth_mm + g(0.5)
      for v in (
          -20.0,
          -32.0,
          -40.0,
          -43.0,
          -40.0,
          -42.0,
          -43.5,
          -43.0,
          -38.0,
          -37.0,
          -36.0,
      )
  )
  face_a = tuple(
      head_width * a
      for a in (
          42.0,
          44.0,
          46.0,
          48.0,
          50.0,
          51.0,
          52.0,
          53.0,
          54.0,
          55.0,
          58.0,
      )
  )
  shift = (g(0.5), g(0.5), g(0.5))
  return HeadAnatomy(
      lower,
      upper,
      z_occ,
      teeth,
      mand_s,
      mand_top,
      mand_bottom,
      mand_halfwidth,
      s_r0 + 24.0,
      s_upp + 5.0,
      molar_y + 3.0,
      face_z,
      face_y,
      face_a,
      27.0 + g(),
      84.0 + g(),
      shift,
      head_scale * (1.0 + 0.02 * g()),
  )
