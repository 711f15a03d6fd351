"""Analytic anatomy of the procedural CBCT head phantom (geometry and labels).

Patient coordinates in mm, DICOM convention: x towards the patient's left,
y posterior, z superior; z = 0 is the bottom of the field of view, below the
chin. Every shape is an implicit function evaluated on broadcast coordinate
vectors z (nz, 1, 1), y (1, Y, 1), x (1, 1, X), so the phantom is painted slab
by slab along Z and separable shapes cost a few adds per voxel.

The jaws use curvilinear arch coordinates (s, n) of a U-shaped curve (a
circular arc in front continued by two straight limbs that diverge backwards):
s = signed arc length in mm (0 at the midline, > 0 on the patient's left),
n = signed distance in mm from the curve (> 0 buccal, i.e. outwards).

Sizes are adult textbook values (tooth crowns and roots, mandible height,
cortical thickness), lightly compressed front-to-back so that lips and
mandibular rami both fit the 84 mm deep field of view of the paper's CBCT scans.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

AIR, SOFT_TISSUE, FAT, BRAIN, CANCELLOUS, CORTICAL = 0, 1, 2, 3, 4, 5
ENAMEL, DENTIN, PULP, AIRWAY, METAL = 6, 7, 8, 9, 10
LABELS = (
    (AIR, 'air'),
    (SOFT_TISSUE, 'soft_tissue'),
    (FAT, 'fat'),
    (BRAIN, 'brain'),
    (CANCELLOUS, 'cancellous_bone'),
    (CORTICAL, 'cortical_bone'),
    (ENAMEL, 'enamel'),
    (DENTIN, 'dentin'),
    (PULP, 'pulp'),
    (AIRWAY, 'airway'),
    (METAL, 'metal'),
)

CORTICAL_MM = 1.8  # Cortical shell of jaws and facial bones.
SKULL_TABLE_MM = 1.5  # Outer and inner tables of the cranial vault.
SKULL_DIPLOE_MM = 3.0  # Cancellous layer between the two tables.
ENAMEL_MM = 1.5  # Enamel cap thickness on the occlusal surface.
SKIN_MM, FAT_MM = 1.5, 4.5  # Dermis, then the subcutaneous fat layer.

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


def _sq(u):
  return u * u


def _quad(u):
  u = u * u
  return u * u


def _ellipsoid(z, y, x, center, radii, shrink=0.0, p_xy=2):
  """Inside test of a superellipsoid (exponent p_xy in x, y; 2 in z)."""
  cx, cy, cz = center
  rx, ry, rz = (max(r - shrink, 1e-3) for r in radii)
  f = _quad if p_xy == 4 else _sq
  return (f((x - cx) / rx) + f((y - cy) / ry) + _sq((z - cz) / rz)) <= 1.0


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


class PlaneMaps:
  """Per-phantom (Y, X) maps that do not depend on z: arch coordinates and
  the mandible/maxilla cross-section profiles along the arch. y, x are the
  patient grid vectors (mm); self.y, self.x are in the anatomy's frame."""

  def __init__(self, anat: HeadAnatomy, y: np.ndarray, x: np.ndarray):
    self.y = ((np.asarray(y, np.float32) - anat.shift[1]) / anat.scale).astype(
        np.float32
    )
    self.x = ((np.asarray(x, np.float32) - anat.shift[0]) / anat.scale).astype(
        np.float32
    )
    yy, xx = self.y[:, None], self.x[None, :]
    self.s_l, self.n_l = arch_coords(anat.lower, yy, xx)
    self.s_u, self.n_u = arch_coords(anat.upper, yy, xx)
    abs_s = np.abs(self.s_l)
    self.m_top = np.interp(abs_s, anat.mand_s, anat.mand_top).astype(np.float32)
    self.m_bot = np.interp(abs_s, anat.mand_s, anat.mand_bottom).astype(
        np.float32
    )
    self.m_hw = np.interp(abs_s, anat.mand_s, anat.mand_halfwidth).astype(
        np.float32
    )
    # A high even power of s rounds off the condyles / tuberosities.
    self.m_end = _quad(_quad(self.s_l / np.float32(anat.mand_end)))
    self.u_end = _quad(_quad(self.s_u / np.float32(anat.max_end)))
    self.u_hw = np.interp(
        np.abs(self.s_u), (0.0, anat.max_end), (6.5, 8.0)
    ).astype(np.float32)
    # Hard palate: a vault rising from the alveolar ridge towards the midline.
    self.palate_z = (66.0 + 5.0 * np.clip(-self.n_u / 14.0, 0.0, 1.0)).astype(
        np.float32
    )
    self.palate_in = (self.n_u < -2.0) & (yy < anat.palate_y)

  def box(self, x0, x1, y0, y1):
    """(y slice, x slice) of the grid points inside an xy box (mm)."""
    ys = slice(*np.searchsorted(self.y, (y0, y1)))
    xs = slice(*np.searchsorted(self.x, (x0, x1)))
    return ys, xs


def _head(anat, z, y, x, shrink):
  """Skin surface (superellipse per slice, anterior profile from knots) plus
  the nose, shrunk inwards by ``shrink`` mm."""
  zf = z.reshape(-1)
  y_front = np.interp(zf, anat.face_z, anat.face_y) + shrink
  y_back = 130.0 - shrink  # Occiput, outside the field of view.
  a = (np.interp(zf, anat.face_z, anat.face_a) - shrink)[:, None, None]
  yc = (0.5 * (y_front + y_back))[:, None, None]
  b = (0.5 * (y_back - y_front))[:, None, None]
  lvl = (np.abs(x) / a) ** 2.5 + (np.abs(y - yc) / b) ** 2.5
  nose = _ellipsoid(z, y, x, (0.0, -37.0, 82.0), (11.0, 9.0, 17.0), shrink)
  return (lvl <= 1.0) | nose


def _capsule(z, y, x, p0, p1, r_h, r_v, shrink):
  """Bar from p0 to p1 (x, y, z) with an elliptical section: r_h wide
  horizontally, r_v tall (mm)."""
  d = np.subtract(p1, p0)
  t = (x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]
  t = np.clip(t / float(d @ d), 0.0, 1.0)
  eh = _sq(x - (p0[0] + t * d[0])) + _sq(y - (p0[1] + t * d[1]))
  ez = z - (p0[2] + t * d[2])
  return eh / (r_h - shrink) ** 2 + _sq(ez / (r_v - shrink)) <= 1.0


def _mandible(anat, m: PlaneMaps, z, shrink):
  """U-shaped mandible: a rounded section swept along the lower arch."""
  zc = 0.5 * (m.m_top + m.m_bot)
  inv_hh = 1.0 / np.maximum(0.5 * (m.m_top - m.m_bot) - shrink, 1e-3)
  w = m.m_hw - shrink
  side = np.where(w > 0, _sq(m.n_l / np.maximum(w, 1e-3)), 2.0) + m.m_end
  return side + _quad((z - zc) * inv_hh) <= 1.0


def _maxilla(anat, m: PlaneMaps, z, y, x, shrink):
  """Alveolar process along the upper arch + hard palate + maxillary body."""
  bottom, top = anat.z_occ + 10.0, 75.0
  side = _sq(m.n_u / (m.u_hw - shrink)) + m.u_end
  alveolar = (
      side + _quad((z - 0.5 * (top + bottom)) / (0.5 * (top - bottom) - shrink))
      <= 1.0
  )
  palate = m.palate_in & (np.abs(z - m.palate_z) <= 2.5 - shrink)
  body = _ellipsoid(
      z, y, x, (0.0, -6.0, 86.0), (38.0, 22.0, 16.0), shrink, p_xy=4
  )
  return alveolar | palate | body


def _zygoma(z, y, x, shrink):
  out = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape), bool)
  for sx in (-1.0, 1.0):
    out |= _ellipsoid(
        z, y, x, (sx * 38.0, -6.0, 92.0), (9.0, 10.0, 9.0), shrink
    )
    out |= _capsule(
        z,
        y,
        x,
        (sx * 40.0, 0.0, 92.0),
        (sx * 48.0, 34.0, 94.0),
        2.6,
        5.0,
        shrink,
    )
  return out


def _skull(z, y, x, shrink):
  """Cranial vault: an ellipsoid whose base dips into the top of the FOV."""
  return _ellipsoid(z, y, x, (0.0, 58.0, 160.0), (66.0, 88.0, 72.0), shrink)


def _cavities(anat, z, y, x, dilate):
  """Air spaces with bony walls: maxillary sinuses and nasal cavity."""
  out = _ellipsoid(
      z, y, x, (0.0, -8.0, 88.0), (10.0, 24.0, 15.0), -dilate, p_xy=4
  )
  for sx in (-1.0, 1.0):
    out |= _ellipsoid(
        z, y, x, (sx * 21.0, -2.0, 88.0), (12.0, 13.0, 11.0), -dilate
    )
  return out


def _pharynx(anat, z, y, x):
  """Airway: oro/hypopharynx tube behind the tongue joined to the nasal
  cavity by the nasopharynx."""
  zf = z.reshape(-1)
  rx = np.interp(zf, (0, 30, 45, 60, 90), (13, 9, 7, 10, 12))[:, None, None]
  ry = np.interp(zf, (0, 40, 60, 90), (7, 4, 6, 8))[:, None, None]
  top = anat.pharynx_top
  tube = (
      _sq(x / rx)
      + _sq((y - anat.pharynx_y) / ry)
      + _quad(_quad((z - 0.5 * top) / (0.5 * top + 5.0)))
  ) <= 1.0
  naso = _ellipsoid(
      z,
      y,
      x,
      (0.0, 0.5 * (anat.pharynx_y + 12.0), 86.0),
      (9.0, 0.5 * (anat.pharynx_y - 12.0) + 4.0, 7.0),
  )
  return tube | naso


def tooth_masks(t: Tooth, a, n, h):
  """(outer, enamel, pulp, filling) masks of a tooth in its local frame:
  a along the arch, n buccal, h (mm) from the CEJ towards the occlusal."""
  b = n - h * math.tan(t.tilt)
  ra, rb, hc = 0.5 * t.width, 0.5 * t.depth, t.crown
  cap = _quad(a / ra) + _quad(b / rb) + _sq((h - 0.5 * hc) / (0.55 * hc))
  crown = (cap <= 1.0) & (h >= 0)
  # Dentin core: the cap shrunk laterally and lowered, so enamel thins out
  # to nothing at the CEJ as in a real crown.
  core = (
      _quad(a / (ra - ENAMEL_MM))
      + _quad(b / (rb - ENAMEL_MM))
      + _sq((h - 0.5 * hc + ENAMEL_MM) / (0.55 * hc))
  ) <= 1.0
  in_root = (h < 0) & (h >= -t.root)
  taper = 1.0 + 0.65 * np.minimum(h, 0.0) / t.root  # 1 at CEJ, .35 at apex.
  if t.roots == 1:
    offsets, r_a = (0.0,), 0.62 * ra
  else:
    offsets, r_a = (-0.32 * ra, 0.32 * ra), 0.3 * ra
  trunk = (h > -3.0) & (_sq(a / (0.62 * ra)) + _sq(b / (0.62 * rb)) <= 1.0)
  root = trunk & in_root
  pulp = (
      _sq(a / (0.4 * ra))
      + _sq(b / (0.4 * rb))
      + _sq((h - 0.3 * hc) / (0.28 * hc))
  ) <= 1.0
  canal_r = np.maximum(0.25 * min(r_a, 0.62 * rb) * taper, 0.4)
  for off in offsets:
    root |= in_root & (
        _sq((a - off) / (r_a * taper)) + _sq(b / (0.62 * rb * taper)) <= 1.0
    )
    pulp |= (
        (h > -t.root + 0.8)
        & (h < 0.3 * hc)
        & (_sq(a - off) + _sq(b) <= _sq(canal_r))
    )
  outer = crown | root
  filling = crown & (
      (
          _quad(a / (0.32 * t.width))
          + _quad(b / (0.3 * t.depth))
          + _sq((h - hc) / 2.2)
      )
      <= 1.0
  )
  return outer, crown & ~core, pulp & outer, filling


def tooth_box(t: Tooth):
  """(x0, x1, y0, y1, z0, z1) bounding box of a tooth in mm."""
  r = (
      0.5 * max(t.width, t.depth)
      + max(t.crown, t.root) * abs(math.tan(t.tilt))
      + 1.5
  )
  z0, z1 = sorted((t.z_cej - t.up * t.root, t.z_cej + t.up * t.crown))
  return t.xy[0] - r, t.xy[0] + r, t.xy[1] - r, t.xy[1] + r, z0, z1


def fillings(anat: HeadAnatomy):
  """(x, y, z0, z1) in mm of each metal filling (for the streak artifacts)."""
  out = []
  for t in anat.teeth:
    if t.filled:
      arch = anat.lower if t.up > 0 else anat.upper
      x, y, nx, ny = arch_point(arch, t.s)
      off = (t.crown - 1.0) * math.tan(t.tilt)
      z_top = t.z_cej + t.up * t.crown
      out.append(
          (
              x + off * nx,
              y + off * ny,
              min(z_top, z_top - t.up * 2.2),
              max(z_top, z_top - t.up * 2.2),
          )
      )
  return out


def paint_slab(
    anat: HeadAnatomy, m: PlaneMaps, z: np.ndarray, metal: bool = True
) -> np.ndarray:
  """Tissue labels [nz, Y, X] int32 of the slices at patient heights z (mm).

  Later structures overwrite earlier ones (skin < fat < facial bones <
  sinuses < skull < mandible < teeth < metal), which is how the nesting of
  real anatomy (roots inside bone, pulp inside dentin) is expressed.
  """
  z3 = anat.local_z(z)[:, None, None]
  y3, x3 = m.y[None, :, None], m.x[None, None, :]
  lab = np.zeros((z3.shape[0], m.y.size, m.x.size), np.int32)
  head = _head(anat, z3, y3, x3, 0.0)
  lab[head] = SOFT_TISSUE
  lab[
      _head(anat, z3, y3, x3, SKIN_MM)
      & ~_head(anat, z3, y3, x3, SKIN_MM + FAT_MM)
  ] = FAT
  zlo, zhi = float(z3.min()), float(z3.max())
  if zhi >= 55.0:
    face = _maxilla(anat, m, z3, y3, x3, 0.0) | _zygoma(z3, y3, x3, 0.0)
    lab[face] = CORTICAL
    lab[
        _maxilla(anat, m, z3, y3, x3, CORTICAL_MM)
        | _zygoma(z3, y3, x3, CORTICAL_MM)
    ] = CANCELLOUS
    lab[face & _cavities(anat, z3, y3, x3, 1.2)] = CORTICAL
    lab[head & _cavities(anat, z3, y3, x3, 0.0)] = AIRWAY
  lab[head & _pharynx(anat, z3, y3, x3)] = AIRWAY
  if zhi >= 85.0:
    tables = SKULL_TABLE_MM + SKULL_DIPLOE_MM
    lab[_skull(z3, y3, x3, 0.0)] = CORTICAL
    lab[_skull(z3, y3, x3, SKULL_TABLE_MM)] = CANCELLOUS
    lab[_skull(z3, y3, x3, tables)] = CORTICAL
    lab[_skull(z3, y3, x3, tables + SKULL_TABLE_MM)] = BRAIN
  if zlo <= max(anat.mand_top) + 1.0:
    lab[_mandible(anat, m, z3, 0.0)] = CORTICAL
    lab[_mandible(anat, m, z3, CORTICAL_MM)] = CANCELLOUS
  for t in anat.teeth:
    x0, x1, y0, y1, t0, t1 = tooth_box(t)
    if t1 < zlo or t0 > zhi:
      continue
    ys, xs = m.box(x0, x1, y0, y1)
    zs = slice(*np.searchsorted(z3.reshape(-1), (t0, t1)))
    s_map, n_map = (m.s_l, m.n_l) if t.up > 0 else (m.s_u, m.n_u)
    h = (z3[zs] - t.z_cej) * t.up
    outer, enamel, pulp, fill = tooth_masks(
        t, s_map[ys, xs] - t.s, n_map[ys, xs], h
    )
    sub = lab[zs, ys, xs]
    sub[outer] = DENTIN
    sub[enamel] = ENAMEL
    sub[pulp] = PULP
    if metal and t.filled:
      sub[fill] = METAL
  return lab


def region_slab(
    anat: HeadAnatomy, m: PlaneMaps, z: np.ndarray, region: str
) -> np.ndarray:
  """Bool envelope [nz, Y, X] of an anatomical region (bone + contents):
  'mandible', 'maxilla', 'jaw' (both), 'zygoma', 'skull' or 'head'."""
  z3 = anat.local_z(z)[:, None, None]
  y3, x3 = m.y[None, :, None], m.x[None, None, :]
  shape = (z3.shape[0], m.y.size, m.x.size)
  parts = {
      'mandible': lambda: _mandible(anat, m, z3, 0.0),
      'maxilla': lambda: _maxilla(anat, m, z3, y3, x3, 0.0),
      'zygoma': lambda: _zygoma(z3, y3, x3, 0.0),
      'skull': lambda: _skull(z3, y3, x3, 0.0),
      'head': lambda: _head(anat, z3, y3, x3, 0.0),
  }
  names = ('mandible', 'maxilla') if region == 'jaw' else (region,)
  if any(n not in parts for n in names):
    raise KeyError(
        f'unknown region {region!r}; known: jaw, ' f'{", ".join(parts)}'
    )
  out = np.zeros(shape, bool)
  for n in names:
    out |= np.broadcast_to(parts[n](), shape)
  return out
