"""3D Slicer volume properties: ``.vp.json`` (Slicer >= 5.9) and legacy ``.vp``.

.vp.json follows Slicer's schema volume-property-schema-v1.0.0.json
(Modules/Loadable/VolumeRendering/Resources/Schema): ``volumeProperties[0]``
with ``interpolationType`` and ``components[0]`` = {shade, lighting{ambient,
diffuse, specular, specularPower}, scalarOpacityUnitDistance, scalarOpacity,
gradientOpacity, rgbTransferFunction}; function points are {x, y | color,
midpoint, sharpness} (midpoint 0.5 and sharpness 0 = linear segments). An
extra top-level ``rlhf_tf`` block (the schema allows additional properties)
records the gradient scale and provenance.

Legacy .vp (vtkMRMLVolumePropertyStorageNode): nine lines -- interpolation
type, shade, diffuse, ambient, specular, specular power, then scalar opacity,
gradient opacity and colour as "<count of numbers> x v [x v ...]" (colour:
x r g b). Slicer reads each line into a 1024-character buffer, so a line must
stay below 1024 characters: the writer drops points (coarser
piecewise-linear tolerance) until it does and logs the tolerance it used.

Gradient x values are in HU per mean voxel spacing (VTK's convention, see
``tables``); the reader needs the scale of the volume it will be used with
when the file does not carry an ``rlhf_tf`` block.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from absl import logging
import numpy as np

from rlhf_tf.export import separable, tables

SCHEMA = (
    'https://raw.githubusercontent.com/slicer/slicer/main/Modules/'
    'Loadable/VolumeRendering/Resources/Schema/'
    'volume-property-schema-v1.0.0.json#'
)
_LINE_LIMIT = 1023  # Slicer's ifstream::getline buffer is 1024 chars.


def _function(points: np.ndarray, colour: bool = False) -> dict:
  key = 'color' if colour else 'y'
  out = []
  for row in points:
    value = [float(v) for v in row[1:]] if colour else float(row[1])
    out.append(
        {'x': float(row[0]), key: value, 'midpoint': 0.5, 'sharpness': 0.0}
    )
  return {
      'type': 'colorTransferFunction' if colour else 'piecewiseLinearFunction',
      'points': out,
  }


def write_vp_json(
    path: str, tf: tables.SeparableTF, provenance: Optional[dict] = None
) -> str:
  """Writes a Slicer .vp.json; returns the path."""
  sh = tf.shading
  component = {
      'shade': bool(sh.shade),
      'lighting': {
          'ambient': sh.ambient,
          'diffuse': sh.diffuse,
          'specular': sh.specular,
          'specularPower': sh.specular_power,
      },
      'disableGradientOpacity': False,
      'scalarOpacityUnitDistance': float(tf.unit_distance_mm),
      'scalarOpacity': _function(tf.scalar_opacity),
      'gradientOpacity': _function(tf.gradient_opacity),
      'rgbTransferFunction': _function(tf.color, colour=True),
  }
  xs = np.concatenate([tf.scalar_opacity[:, 0], tf.color[:, 0]])
  doc = {
      '@schema': SCHEMA,
      'volumeProperties': [
          {
              'effectiveRange': [float(xs.min()), float(xs.max())],
              'interpolationType': 'linear',
              'components': [component],
          }
      ],
      'rlhf_tf': dict(
          name=tf.name,
          gradient_scale_mm=tf.gradient_scale_mm,
          gradient_units='HU per gradient_scale_mm',
          **(provenance or {}),
      ),
  }
  with open(path, 'w') as f:
    json.dump(doc, f, indent=1)
  return os.fspath(path)


def _points(path, what: str, fn, colour: bool = False) -> np.ndarray:
  try:
    pts = fn['points']
    rows = [[p['x']] + (list(p['color']) if colour else [p['y']]) for p in pts]
    nonlinear = [
        p
        for p in pts
        if p.get('midpoint', 0.5) != 0.5 or p.get('sharpness', 0.0) != 0.0
    ]
  except (KeyError, TypeError) as e:
    raise ValueError(
        f'{path}: {what} is not a list of points with x and '
        f'{"color" if colour else "y"} ({e!r})'
    ) from e
  if nonlinear:
    logging.warning(
        '%s: %s has %d points with midpoint/sharpness other than '
        '0.5/0; read as linear segments',
        path,
        what,
        len(nonlinear),
    )
  if not rows:
    raise ValueError(f'{path}: {what} has no points')
  return np.asarray(rows, np.float64)


def read_vp_json(
    path: str,
    gradient_scale_mm: Optional[float] = None,
    name: Optional[str] = None,
) -> tables.SeparableTF:
  """Reads the first component of a Slicer .vp.json.

  Args:
    path: the file.
    gradient_scale_mm: mean voxel spacing of the volume the TF will be used
      with (gradient x values are HU per that length); default: the file's
      ``rlhf_tf`` block, else 1.0 (HU/mm).
    name: preset name (default: the file's, else the file name).
  """
  try:
    with open(path) as f:
      doc = json.load(f)
    comp = doc['volumeProperties'][0]['components'][0]
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON ({e})') from e
  except (KeyError, IndexError, TypeError) as e:
    raise ValueError(
        f'{path}: no volumeProperties[0].components[0] (not a '
        f'Slicer .vp.json volume property)'
    ) from e
  meta = doc.get('rlhf_tf', {}) if isinstance(doc, dict) else {}
  if 'scalarOpacity' not in comp:
    raise ValueError(f'{path}: components[0] has no scalarOpacity')
  lighting = comp.get('lighting', {})
  default = tables.Shading(
      shade=False, ambient=0.1, diffuse=0.7, specular=0.2, specular_power=10.0
  )  # Schema's.
  shading = tables.Shading(
      shade=bool(comp.get('shade', default.shade)),
      ambient=float(lighting.get('ambient', default.ambient)),
      diffuse=float(lighting.get('diffuse', default.diffuse)),
      specular=float(lighting.get('specular', default.specular)),
      specular_power=float(
          lighting.get('specularPower', default.specular_power)
      ),
  )
  gradient = (
      _points(path, 'gradientOpacity', comp['gradientOpacity'])
      if 'gradientOpacity' in comp
      and not comp.get('disableGradientOpacity', False)
      else np.array([[0.0, 1.0]])
  )
  colour = (
      _points(
          path, 'rgbTransferFunction', comp['rgbTransferFunction'], colour=True
      )
      if 'rgbTransferFunction' in comp
      else np.array([[0.0, 1.0, 1.0, 1.0]])
  )
  scale = gradient_scale_mm or meta.get('gradient_scale_mm', 1.0)
  return tables.SeparableTF(
      scalar_opacity=_points(path, 'scalarOpacity', comp['scalarOpacity']),
      gradient_opacity=gradient,
      color=colour,
      unit_distance_mm=float(comp.get('scalarOpacityUnitDistance', 1.0)),
      gradient_scale_mm=float(scale),
      shading=shading,
      name=name or meta.get('name') or os.path.basename(path).split('.')[0],
  )


def _line(points: np.ndarray, what: str, path) -> str:
  """'<count> x v ...' under the line limit, dropping points if needed."""
  tol = 0.0
  pts = points
  while True:
    nums = pts.reshape(-1)
    line = ' '.join([str(nums.size)] + [f'{v:.7g}' for v in nums])
    if len(line) <= _LINE_LIMIT:
      if tol:
        logging.warning(
            '%s: %s simplified to %d points (tolerance %.2g) to '
            'fit the .vp line limit',
            path,
            what,
            len(pts),
            tol,
        )
      return line
    tol = max(tol * 2, 1e-4)
    keep = separable.simplify_points(points[:, 0], points[:, 1:], tol)
    pts = points[keep]


def write_vp(path: str, tf: tables.SeparableTF) -> str:
  """Writes a legacy Slicer .vp file; returns the path."""
  sh = tf.shading
  lines = [
      '1',
      str(int(sh.shade)),
      f'{sh.diffuse:.7g}',
      f'{sh.ambient:.7g}',
      f'{sh.specular:.7g}',
      f'{sh.specular_power:.7g}',
      _line(tf.scalar_opacity, 'scalar opacity', path),
      _line(tf.gradient_opacity, 'gradient opacity', path),
      _line(tf.color, 'colour', path),
  ]
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return os.fspath(path)


def _parse_line(path, number: int, line: str, width: int) -> np.ndarray:
  try:
    nums = [float(v) for v in line.split()]
  except ValueError as e:
    raise ValueError(f'{path}: line {number} is not numbers ({e})') from e
  if not nums or int(nums[0]) != len(nums) - 1 or (len(nums) - 1) % width:
    raise ValueError(
        f'{path}: line {number} must be "<count> then {width}'
        f'-tuples", got {line[:60]!r}'
    )
  return np.asarray(nums[1:]).reshape(-1, width)


def read_vp(
    path: str,
    gradient_scale_mm: float = 1.0,
    unit_distance_mm: float = 1.0,
    name: Optional[str] = None,
) -> tables.SeparableTF:
  """Reads a legacy .vp (it stores neither the unit distance nor the
  gradient scale: pass those of the volume it is for)."""
  with open(path) as f:
    lines = f.read().splitlines()
  if len(lines) < 9:
    raise ValueError(f'{path}: a .vp file has 9 lines, found {len(lines)}')
  try:
    shade = tables.Shading(
        shade=bool(int(float(lines[1]))),
        diffuse=float(lines[2]),
        ambient=float(lines[3]),
        specular=float(lines[4]),
        specular_power=float(lines[5]),
    )
  except ValueError as e:
    raise ValueError(f'{path}: lines 2-6 must be numbers ({e})') from e
  return tables.SeparableTF(
      scalar_opacity=_parse_line(path, 7, lines[6], 2),
      gradient_opacity=_parse_line(path, 8, lines[7], 2),
      color=_parse_line(path, 9, lines[8], 4),
      unit_distance_mm=unit_distance_mm,
      gradient_scale_mm=gradient_scale_mm,
      shading=shade,
      name=name or os.path.basename(path).split('.')[0],
  )
