"""The lossless 2D TF as .nrrd (pynrrd): RGBA float32 with its axes.

Layout (NRRD sizes fastest first): ``4 bins_x bins_y`` = RGBA, HU, |grad|,
raw encoding (VTK's vtkNrrdReader reads it as a 4-component image of
bins_x x bins_y). The axes are the standard per-axis fields with cell
centring, so the i-th bin of an axis covers [min + i d, min + (i + 1) d):

  kinds:       RGBA-color domain domain
  centerings:  ??? cell cell
  axis mins:   NaN hu_min 0
  axis maxs:   NaN hu_max grad_max
  labels:      "RGBA" "HU" "gradient magnitude"
  units:       "" "HU" "HU/mm"

plus key/value pairs ``rlhf_tf_unit_distance_mm`` (the path length the
alpha is for) and ``rlhf_tf_name``.
"""

from __future__ import annotations

import math
import os

import nrrd
import numpy as np

from rlhf_tf.export import tables

_UNIT_KEY = 'rlhf_tf_unit_distance_mm'
_NAME_KEY = 'rlhf_tf_name'


def write_nrrd(path: str, table: tables.TFTable) -> str:
  """Writes the table; returns the path."""
  header = {
      'kinds': ['RGBA-color', 'domain', 'domain'],
      'centerings': ['???', 'cell', 'cell'],
      'axis mins': [math.nan, float(table.hu_min), 0.0],
      'axis maxs': [math.nan, float(table.hu_max), float(table.grad_max)],
      'labels': ['RGBA', 'HU', 'gradient magnitude'],
      'units': ['', 'HU', 'HU/mm'],
      'encoding': 'raw',
      'endian': 'little',
      _UNIT_KEY: repr(float(table.unit_distance_mm)),
      _NAME_KEY: table.name,
  }
  # C order: the array [bins_y, bins_x, 4] is NRRD sizes (4, bins_x, bins_y).
  nrrd.write(
      os.fspath(path),
      np.ascontiguousarray(table.rgba, '<f4'),
      header,
      index_order='C',
  )
  return os.fspath(path)


def read_nrrd(path: str) -> tables.TFTable:
  """Reads a table written by write_nrrd; one clear error otherwise."""
  try:
    data, header = nrrd.read(os.fspath(path), index_order='C')
  except (nrrd.NRRDError, OSError) as e:
    raise ValueError(f'{path}: not a readable NRRD file ({e})') from e
  if data.ndim != 3 or data.shape[-1] != 4:
    raise ValueError(
        f'{path}: expected a 4 x bins_x x bins_y RGBA table, '
        f'got sizes {tuple(reversed(data.shape))}'
    )
  try:
    mins, maxs = header['axis mins'], header['axis maxs']
    hu_min, hu_max = float(mins[1]), float(maxs[1])
    grad_min, grad_max = float(mins[2]), float(maxs[2])
  except (KeyError, IndexError, TypeError) as e:
    raise ValueError(
        f'{path}: missing the "axis mins"/"axis maxs" fields of '
        f'the HU and gradient axes'
    ) from e
  if grad_min != 0.0:
    raise ValueError(
        f'{path}: the gradient axis must start at 0, got ' f'{grad_min}'
    )
  unit = float(header.get(_UNIT_KEY, 1.0))
  return tables.TFTable(
      rgba=np.asarray(data, np.float32),
      hu_min=hu_min,
      hu_max=hu_max,
      grad_max=grad_max,
      unit_distance_mm=unit,
      name=str(header.get(_NAME_KEY, 'rlhf_tf')),
  )


def write_volume_nrrd(path: str, hu, spacing_zyx) -> str:
  """The volume in HU as .nrrd (sizes X Y Z, spacings in mm), raw int16 when
  the HU are whole numbers in range, else float32; for the VTK script."""
  hu = np.asarray(hu)
  spacing = [float(s) for s in np.asarray(spacing_zyx)[::-1]]
  whole = (
      np.all(np.round(hu) == hu) and hu.min() >= -32768 and hu.max() <= 32767
  )
  data = np.ascontiguousarray(hu, '<i2' if whole else '<f4')
  nrrd.write(
      os.fspath(path),
      data,
      {
          'spacings': spacing,
          'units': ['mm', 'mm', 'mm'],
          'encoding': 'raw',
          'endian': 'little',
      },
      index_order='C',
  )
  return os.fspath(path)
