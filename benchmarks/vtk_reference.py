"""VTK's CPU ray caster as the renderer benchmarks' reference
(``benchmarks/render.py``, ``benchmarks/render_quality.py``): a scene set up
once per volume, TF and settings, pointed at the project's views."""

from __future__ import annotations

import statistics
import time

import numpy as np


class VtkScene:
  """VTK's vtkFixedPointVolumeRayCastMapper, offscreen, set up once for a
  volume, TF and settings; ``look`` points its camera at a view of the
  project's, ``render_s`` times one render of it. It has no 2D TF: the
  table's alpha at zero-gradient / mid-gradient is approximated by a scalar
  opacity (max over gradient rows) times a gradient-opacity ramp. Raises
  ImportError without vtk."""

  def __init__(self, hu, spacing, axes, table, size, step_mm, settings):
    import vtk  # pylint: disable=g-import-not-at-top
    from vtk.util import numpy_support  # pylint: disable=g-import-not-at-top

    self.vtk, self.numpy_support, self.size = vtk, numpy_support, size
    z, y, x = hu.shape
    img = vtk.vtkImageData()
    img.SetDimensions(x, y, z)
    img.SetSpacing(spacing[2], spacing[1], spacing[0])
    arr = numpy_support.numpy_to_vtk(
        np.ascontiguousarray(hu).ravel(), deep=True, array_type=vtk.VTK_FLOAT
    )
    img.GetPointData().SetScalars(arr)
    bins = table.shape[1]
    centres = axes.x_to_hu((np.arange(bins) + 0.5) / bins)
    opacity = vtk.vtkPiecewiseFunction()
    color = vtk.vtkColorTransferFunction()
    alpha_x = table[..., 3].max(axis=0)
    rows = table[..., 3].argmax(axis=0)
    for i in range(0, bins, 4):
      opacity.AddPoint(float(centres[i]), float(alpha_x[i]))
      r, g, b = table[rows[i], i, :3]
      color.AddRGBPoint(float(centres[i]), float(r), float(g), float(b))
    gopac = vtk.vtkPiecewiseFunction()
    gopac.AddPoint(0.0, 0.0)
    gopac.AddPoint(0.05 * axes.grad_max, 1.0)
    prop = vtk.vtkVolumeProperty()
    prop.SetColor(color)
    prop.SetScalarOpacity(opacity)
    prop.SetGradientOpacity(gopac)
    prop.SetScalarOpacityUnitDistance(settings.reference_step_mm)
    prop.SetInterpolationTypeToLinear()
    prop.ShadeOn() if settings.shading else prop.ShadeOff()
    prop.SetAmbient(settings.ambient)
    prop.SetDiffuse(settings.diffuse)
    prop.SetSpecular(settings.specular)
    prop.SetSpecularPower(settings.shininess)
    mapper = vtk.vtkFixedPointVolumeRayCastMapper()
    mapper.SetInputData(img)
    mapper.SetSampleDistance(step_mm)
    mapper.SetAutoAdjustSampleDistances(0)
    mapper.SetNumberOfThreads(2)
    self.volume = vtk.vtkVolume()
    self.volume.SetMapper(mapper)
    self.volume.SetProperty(prop)
    self.ren = vtk.vtkRenderer()
    self.ren.AddVolume(self.volume)
    self.ren.SetBackground(*settings.background)
    self.win = vtk.vtkRenderWindow()
    self.win.SetOffScreenRendering(1)
    self.win.AddRenderer(self.ren)
    self.win.SetSize(size, size)

  def look(self, view):
    """Points the camera at the project's view (parallel projection) and
    renders once (VTK's first render of a view builds its tables)."""
    cam = self.ren.GetActiveCamera()
    cam.ParallelProjectionOn()
    # World (z, y, x) -> VTK (x, y, z).
    cam.SetPosition(*np.asarray(view.eye)[::-1].tolist())
    cam.SetFocalPoint(*np.asarray(view.centre)[::-1].tolist())
    cam.SetViewUp(*np.asarray(view.up)[::-1].tolist())
    cam.SetParallelScale(float(view.ortho_width_mm) / 2)
    self.ren.ResetCameraClippingRange()
    self.win.Render()

  def render_s(self):
    """Seconds of one render of the current view."""
    t = time.perf_counter()
    self.win.Modified()
    self.volume.Modified()
    self.win.Render()
    return time.perf_counter() - t

  def image(self):
    """[size, size, 3] uint8 of the last render."""
    grab = self.vtk.vtkWindowToImageFilter()
    grab.SetInput(self.win)
    grab.Update()
    return self.numpy_support.vtk_to_numpy(
        grab.GetOutput().GetPointData().GetScalars()
    ).reshape(self.size, self.size, -1)[::-1, :, :3]


def vtk_scene(hu, spacing, axes, table, size, step_mm, settings):
  """A VtkScene, or {'skipped' / 'error': why} without one."""
  try:
    return VtkScene(hu, spacing, axes, table, size, step_mm, settings)
  except ImportError as e:
    return {'skipped': f'import vtk failed: {e}'}
  except Exception as e:  # pylint: disable=broad-except
    return {'error': f'{type(e).__name__}: {e}'}


def bench_vtk(
    hu, spacing, axes, table, size, step_mm, settings, view, repeats=5
):
  """VTK's time (median of repeats renders) and image of one view
  (VtkScene)."""
  scene = vtk_scene(hu, spacing, axes, table, size, step_mm, settings)
  if isinstance(scene, dict):
    return scene
  try:
    scene.look(view)
    times = [scene.render_s() for _ in range(repeats)]
    shot = scene.image()
    return {
        'median_s': statistics.median(times) if times else None,
        'version': scene.vtk.vtkVersion().GetVTKVersion(),
        'mapper': 'vtkFixedPointVolumeRayCastMapper',
        'mean_rgb': float(shot.mean() / 255.0),
        'image': shot,
        'note': '1D scalar opacity x gradient-opacity ramp approximating '
        'the 2D TF; early ray termination + space leaping; '
        'offscreen (no X server needed)',
    }
  except Exception as e:  # pylint: disable=broad-except
    return {'error': f'{type(e).__name__}: {e}'}
