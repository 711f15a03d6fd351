"""The tissues of the procedural CBCT head phantom, painted from its
sampled anatomy (``phantom_anatomy``: geometry, coordinates in mm).

Every shape is an implicit function evaluated on broadcast coordinate
vectors z (nz, 1, 1), y (1, Y, 1), x (1, 1, X), so the phantom is painted slab
by slab along Z and separable shapes cost a few adds per voxel. Layer
thicknesses (cortical shell, skull tables, enamel, skin and fat) are adult
textbook values.
"""

from __future__ import annotations

import math

import numpy as np

from rlhf_tf.data.phantom_anatomy import (
    arch_coords,
    arch_point,
    HeadAnatomy,
    Tooth,
)

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
