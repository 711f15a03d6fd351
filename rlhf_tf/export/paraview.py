"""ParaView transfer-function JSON (File > Export / Import in the Color Map
Editor; vtkSMTransferFunctionProxy::ExportTransferFunction).

The file is a JSON list of presets; each has ``Name``, ``ColorSpace``,
``RGBPoints`` (flat x, r, g, b, ...) and ``Points`` (flat scalar opacity
x, opacity, midpoint, sharpness, ...). A preset has no gradient opacity nor
opacity unit distance (those are properties of ParaView's volume
representation: "Use Gradient for ..." / "Scalar Opacity Unit Distance").
They travel in an ``rlhf_tf`` block of the preset (ParaView ignores keys it
does not know): ``GradientOpacityPoints`` (same layout as Points, x in HU per
``gradient_scale_mm``), ``unit_distance_mm`` and ``gradient_scale_mm``.
Import the file in ParaView without rescaling the range ("Preserve preset
range") so the HU values stay where they are.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np

from rlhf_tf.export import tables


def _flat_opacity(points: np.ndarray) -> list:
  out = []
  for x, v in points:
    out += [float(x), float(v), 0.5, 0.0]
  return out


def write_paraview(
    path: str, tf: tables.SeparableTF, provenance: Optional[dict] = None
) -> str:
  """Writes a one-preset ParaView TF JSON; returns the path."""
  preset = {
      'Name': tf.name,
      'ColorSpace': 'RGB',
      'NanColor': [1.0, 1.0, 0.0],
      'RGBPoints': [float(v) for v in tf.color.reshape(-1)],
      'Points': _flat_opacity(tf.scalar_opacity),
      'rlhf_tf': dict(
          GradientOpacityPoints=_flat_opacity(tf.gradient_opacity),
          gradient_scale_mm=tf.gradient_scale_mm,
          unit_distance_mm=tf.unit_distance_mm,
          **(provenance or {}),
      ),
  }
  with open(path, 'w') as f:
    json.dump([preset], f, indent=1)
  return os.fspath(path)


def _unflatten(path, what: str, values, width: int) -> np.ndarray:
  v = np.asarray(values, np.float64).reshape(-1)
  if v.size == 0 or v.size % width:
    raise ValueError(
        f'{path}: {what} must hold {width}-tuples, got ' f'{v.size} numbers'
    )
  return v.reshape(-1, width)


def read_paraview(
    path: str,
    index: int = 0,
    gradient_scale_mm: Optional[float] = None,
    unit_distance_mm: Optional[float] = None,
) -> tables.SeparableTF:
  """Reads preset ``index`` of a ParaView TF JSON (a list, or one preset).

  Missing opacity means opaque (ParaView's colour-only presets); missing
  gradient opacity means 1 everywhere.
  """
  try:
    with open(path) as f:
      doc = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON ({e})') from e
  presets = doc if isinstance(doc, list) else [doc]
  if not 0 <= index < len(presets) or not isinstance(presets[index], dict):
    raise ValueError(f'{path}: no preset {index} (file holds {len(presets)})')
  p = presets[index]
  if 'RGBPoints' not in p:
    raise ValueError(f'{path}: preset {index} has no RGBPoints')
  extra = p.get('rlhf_tf', {})
  colour = _unflatten(path, 'RGBPoints', p['RGBPoints'], 4)
  opacity = (
      _unflatten(path, 'Points', p['Points'], 4)[:, :2]
      if 'Points' in p
      else np.array([[colour[0, 0], 1.0]])
  )
  gradient = (
      _unflatten(
          path, 'GradientOpacityPoints', extra['GradientOpacityPoints'], 4
      )[:, :2]
      if 'GradientOpacityPoints' in extra
      else np.array([[0.0, 1.0]])
  )
  return tables.SeparableTF(
      scalar_opacity=opacity,
      gradient_opacity=gradient,
      color=colour,
      unit_distance_mm=float(
          unit_distance_mm or extra.get('unit_distance_mm', 1.0)
      ),
      gradient_scale_mm=float(
          gradient_scale_mm or extra.get('gradient_scale_mm', 1.0)
      ),
      name=str(p.get('Name', os.path.basename(path))),
  )
