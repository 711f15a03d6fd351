"""A short, ready-to-run VTK script that renders a volume with the 2D TF.

``write_vtk_script(path, table, nrrd_name)`` writes ``render_tf_vtk.py``
next to the table's .nrrd. It needs only ``vtk`` and ``numpy``:

  python render_tf_vtk.py VOLUME [--screenshot out.png]

VOLUME: a DICOM folder (vtkDICOMImageReader, which applies the series'
slope/intercept), or a .nrrd/.nhdr, .mha/.mhd, .nii/.nii.gz file in HU.
The 2D TF goes into vtkVolumeProperty.SetTransferFunction2D (GPU ray
caster, TransferFunctionMode = TF_2D). VTK looks the table up at
(scalar normalised over the volume's scalar range, |grad| normalised over
[0, 0.25 x scalar range] in HU per mean voxel spacing) -- see
vtkOpenGLGPUVolumeRayCastMapper's computeGradient -- so the script
resamples the exported table (axes HU x HU/mm) onto those axes. The mapper's
sample distance is the table's opacity unit distance, so the table's alpha is
used as is.
"""

from __future__ import annotations

import os

from rlhf_tf.export import tables

_TEMPLATE = '''#!/usr/bin/env python3
"""Render a CT volume with the rlhf_tf 2D transfer function {name!r}.

  python {script} VOLUME [--screenshot out.png] [--size 512]

VOLUME: a DICOM folder, or a .nrrd/.nhdr, .mha/.mhd, .nii/.nii.gz in HU.
Needs: pip install vtk numpy. Written by rlhf_tf (rlhf_tf/export/vtk_script.py).
"""
import argparse
import os

import numpy as np
import vtk
from vtk.util import numpy_support

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), {table!r})
HU_MIN, HU_MAX, GRAD_MAX = {hu_min!r}, {hu_max!r}, {grad_max!r}  # HU/mm
UNIT_DISTANCE_MM = {unit!r}
SHADE, AMBIENT, DIFFUSE, SPECULAR, POWER = {shade!r}, {ambient!r}, \\
    {diffuse!r}, {specular!r}, {power!r}


def read_volume(path):
  """vtkImageData of the volume in HU (float)."""
  if os.path.isdir(path):
    # vtkDICOMImageReader applies the series' rescale slope / intercept
    # itself (HU out); it cannot decode every encoding (e.g. 32-bit pixels).
    reader = vtk.vtkDICOMImageReader()
    reader.SetDirectoryName(path)
    reader.Update()
    if reader.GetOutput().GetScalarRange() == (0.0, 0.0):
      raise SystemExit(f'{{path}}: vtkDICOMImageReader read no pixel values '
                       f'from this series; use the volume.nrrd the propose '
                       f'job wrote next to this script')
    return reader.GetOutput()
  lower = path.lower()
  if lower.endswith(('.nrrd', '.nhdr')):
    reader = vtk.vtkNrrdReader()
  elif lower.endswith(('.mha', '.mhd')):
    reader = vtk.vtkMetaImageReader()
  elif lower.endswith(('.nii', '.nii.gz')):
    reader = vtk.vtkNIFTIImageReader()
  else:
    raise SystemExit(f'{{path}}: use a DICOM folder or .nrrd/.mha/.nii')
  reader.SetFileName(path)
  reader.Update()
  return reader.GetOutput()


def table_rgba():
  """The exported table [bins_y, bins_x, 4] (rows = gradient bins)."""
  reader = vtk.vtkNrrdReader()
  reader.SetFileName(TABLE)
  reader.Update()
  image = reader.GetOutput()
  nx, ny, _ = image.GetDimensions()
  flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
  return flat.reshape(ny, nx, 4).astype(np.float64)


def resample(rgba, lo, hi, gmax_vtk, mean_spacing, bins=256):
  """The table on VTK's 2D-TF axes: x over the scalar range [lo, hi], y over
  [0, gmax_vtk] HU per mean spacing (bilinear, clamped like rlhf_tf)."""
  ny, nx, _ = rgba.shape
  c = (np.arange(bins) + 0.5) / bins
  hu = lo + c * (hi - lo)
  grad = c * gmax_vtk / mean_spacing  # HU/mm
  fx = np.clip((hu - HU_MIN) / (HU_MAX - HU_MIN) * nx - 0.5, 0, nx - 1)
  fy = np.clip(grad / GRAD_MAX * ny - 0.5, 0, ny - 1)
  x0 = np.minimum(np.floor(fx).astype(int), nx - 2)
  y0 = np.minimum(np.floor(fy).astype(int), ny - 2)
  wx, wy = (fx - x0)[None, :, None], (fy - y0)[:, None, None]
  top = rgba[y0][:, x0] * (1 - wx) + rgba[y0][:, x0 + 1] * wx
  bottom = rgba[y0 + 1][:, x0] * (1 - wx) + rgba[y0 + 1][:, x0 + 1] * wx
  return top * (1 - wy) + bottom * wy


def volume_property(image):
  lo, hi = image.GetScalarRange()
  mean_spacing = float(np.mean(image.GetSpacing()))
  table = resample(table_rgba(), lo, hi, 0.25 * (hi - lo), mean_spacing)
  tf2d = vtk.vtkImageData()
  tf2d.SetDimensions(table.shape[1], table.shape[0], 1)
  tf2d.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
      np.ascontiguousarray(table, np.float32).reshape(-1, 4), deep=True,
      array_type=vtk.VTK_FLOAT))
  prop = vtk.vtkVolumeProperty()
  prop.SetTransferFunction2D(tf2d)
  prop.SetTransferFunctionModeTo2D()
  prop.SetInterpolationTypeToLinear()
  prop.SetScalarOpacityUnitDistance(UNIT_DISTANCE_MM)
  prop.SetShade(int(SHADE))
  prop.SetAmbient(AMBIENT)
  prop.SetDiffuse(DIFFUSE)
  prop.SetSpecular(SPECULAR)
  prop.SetSpecularPower(POWER)
  return prop


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('volume')
  parser.add_argument('--screenshot', default='')
  parser.add_argument('--size', type=int, default=512)
  args = parser.parse_args()
  image = read_volume(args.volume)
  mapper = vtk.vtkGPUVolumeRayCastMapper()
  mapper.SetInputData(image)
  mapper.SetAutoAdjustSampleDistances(0)
  mapper.SetSampleDistance(UNIT_DISTANCE_MM)
  volume = vtk.vtkVolume()
  volume.SetMapper(mapper)
  volume.SetProperty(volume_property(image))
  renderer = vtk.vtkRenderer()
  renderer.AddVolume(volume)
  renderer.ResetCamera()
  window = vtk.vtkRenderWindow()
  window.AddRenderer(renderer)
  window.SetSize(args.size, args.size)
  if args.screenshot:
    window.SetOffScreenRendering(1)
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(args.screenshot)
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    return
  interactor = vtk.vtkRenderWindowInteractor()
  interactor.SetRenderWindow(window)
  window.Render()
  interactor.Start()


if __name__ == '__main__':
  main()
'''


def write_vtk_script(
    path: str,
    table: tables.TFTable,
    nrrd_name: str,
    shading: tables.Shading = tables.Shading(),
) -> str:
  """Writes the script for ``nrrd_name`` (relative to the script's folder)."""
  text = _TEMPLATE.format(
      name=table.name,
      script=os.path.basename(path),
      table=nrrd_name,
      hu_min=float(table.hu_min),
      hu_max=float(table.hu_max),
      grad_max=float(table.grad_max),
      unit=float(table.unit_distance_mm),
      shade=bool(shading.shade),
      ambient=float(shading.ambient),
      diffuse=float(shading.diffuse),
      specular=float(shading.specular),
      power=float(shading.specular_power),
  )
  with open(path, 'w') as f:
    f.write(text)
  os.chmod(path, 0o755)
  return os.fspath(path)
