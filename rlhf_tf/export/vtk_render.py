"""Renders a volume with an exported TF in VTK, from the project's camera.

Optional: needs ``vtk`` (requirements-bench.txt); offscreen (EGL/OSMesa, no
X server). Used to check that what we export is what VTK-based viewers show
(tests/test_export_vtk.py) and by benchmarks.

- ``render_separable``: vtkFixedPointVolumeRayCastMapper (VTK's CPU ray
  caster) with the SeparableTF's scalar opacity, gradient opacity (x in HU
  per mean voxel spacing) and colour -- what Slicer / ParaView get.
- ``render_table``: vtkGPUVolumeRayCastMapper with the 2D TF table, through
  the same resampling as the ready-to-run script (vtk_script).

World frame: rlhf_tf's (z, y, x) mm with voxel centres at index * spacing;
VTK's image has the same centres with (x, y, z) order, so positions and
directions are reversed.
"""

from __future__ import annotations

import numpy as np

from rlhf_tf.export import tables


def _vtk():
  import vtk  # pylint: disable=g-import-not-at-top
  from vtk.util import numpy_support  # pylint: disable=g-import-not-at-top

  return vtk, numpy_support


def _image(hu, spacing_zyx):
  vtk, ns = _vtk()
  z, y, x = np.shape(hu)
  img = vtk.vtkImageData()
  img.SetDimensions(x, y, z)
  img.SetSpacing(*[float(s) for s in np.asarray(spacing_zyx)[::-1]])
  img.GetPointData().SetScalars(
      ns.numpy_to_vtk(
          np.ascontiguousarray(hu, np.float32).ravel(),
          deep=True,
          array_type=vtk.VTK_FLOAT,
      )
  )
  return img


def _shoot(img, prop, mapper, camera, background=(0.0, 0.0, 0.0)):
  """[H, W, 3] uint8 offscreen rendering from an rlhf_tf Camera."""
  vtk, ns = _vtk()
  mapper.SetInputData(img)
  volume = vtk.vtkVolume()
  volume.SetMapper(mapper)
  volume.SetProperty(prop)
  ren = vtk.vtkRenderer()
  ren.AddVolume(volume)
  ren.SetBackground(*background)
  win = vtk.vtkRenderWindow()
  win.SetOffScreenRendering(1)
  win.AddRenderer(ren)
  win.SetSize(int(camera.width), int(camera.height))
  cam = ren.GetActiveCamera()
  cam.ParallelProjectionOn()
  cam.SetPosition(*np.asarray(camera.eye, np.float64)[::-1].tolist())
  cam.SetFocalPoint(*np.asarray(camera.centre, np.float64)[::-1].tolist())
  cam.SetViewUp(*np.asarray(camera.up, np.float64)[::-1].tolist())
  cam.SetParallelScale(float(camera.ortho_width_mm) / 2)
  ren.ResetCameraClippingRange()
  win.Render()
  grab = vtk.vtkWindowToImageFilter()
  grab.SetInput(win)
  grab.Update()
  out = ns.vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars())
  h, w = int(camera.height), int(camera.width)
  return out.reshape(h, w, -1)[::-1, :, :3].copy()


def _lighting(prop, shading: tables.Shading):
  prop.SetInterpolationTypeToLinear()
  prop.SetShade(int(shading.shade))
  prop.SetAmbient(shading.ambient)
  prop.SetDiffuse(shading.diffuse)
  prop.SetSpecular(shading.specular)
  prop.SetSpecularPower(shading.specular_power)


def render_separable(
    hu, spacing_zyx, tf: tables.SeparableTF, camera, step_mm: float
):
  """VTK CPU ray caster image [H, W, 3] uint8 of a SeparableTF."""
  vtk, _ = _vtk()
  opacity = vtk.vtkPiecewiseFunction()
  for x, a in tf.scalar_opacity:
    opacity.AddPoint(float(x), float(a))
  gradient = vtk.vtkPiecewiseFunction()
  for x, g in tf.gradient_opacity:
    gradient.AddPoint(float(x), float(g))
  colour = vtk.vtkColorTransferFunction()
  for x, r, g, b in tf.color:
    colour.AddRGBPoint(float(x), float(r), float(g), float(b))
  prop = vtk.vtkVolumeProperty()
  prop.SetColor(colour)
  prop.SetScalarOpacity(opacity)
  prop.SetGradientOpacity(gradient)
  prop.SetScalarOpacityUnitDistance(float(tf.unit_distance_mm))
  _lighting(prop, tf.shading)
  mapper = vtk.vtkFixedPointVolumeRayCastMapper()
  mapper.SetSampleDistance(float(step_mm))
  mapper.SetAutoAdjustSampleDistances(0)
  mapper.SetNumberOfThreads(2)
  return _shoot(_image(hu, spacing_zyx), prop, mapper, camera)


def silhouette_iou(a, b, threshold: int = 8) -> float:
  """IoU of the non-background pixels (max RGB > threshold of 255)."""
  ma = np.asarray(a)[..., :3].max(-1) > threshold
  mb = np.asarray(b)[..., :3].max(-1) > threshold
  union = (ma | mb).sum()
  return float((ma & mb).sum() / union) if union else 1.0
