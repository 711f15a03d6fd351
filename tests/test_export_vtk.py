"""VTK renders the exported phantom TF like the project's renderer does.

Optional: skips without ``vtk`` (requirements-bench.txt) or without an
offscreen OpenGL context. The CPU ray caster
(vtkFixedPointVolumeRayCastMapper) gets the Slicer export (separable scalar x
gradient opacity, read back from the .vp.json); the GPU ray caster gets the
2D table through the generated ready-to-run script's own code.
"""

import importlib.util

import jax
import numpy as np
import pytest

from rlhf_tf.data import phantom
from rlhf_tf.export import nrrd_table, separable, slicer, tables, vtk_script
from rlhf_tf.preferences import scenes
from rlhf_tf.render import histogram

vtk = pytest.importorskip('vtk')
vtk_render = pytest.importorskip('rlhf_tf.export.vtk_render')


@pytest.fixture(scope='module')
def phantom_scene():
  volume = phantom.make_head_phantom(jax.random.key(0), shape=(64, 64, 64))
  cfg = scenes.default_config()
  cfg.image_size = 96
  scene = scenes.build_scene(
      'phantom64', volume, histogram.default_config(), cfg
  )
  vertices = scene.experts[0]
  table = tables.polygon_table(
      vertices,
      scene.jh.axes,
      scene.bins,
      scene.tau,
      scene.alpha_max,
      scene.settings.reference_step_mm,
  )
  ours = scenes.rgb_uint8(scene.render(vertices))
  return scene, table, ours


def test_cpu_ray_caster_renders_the_slicer_export(phantom_scene, tmp_path):
  scene, table, ours = phantom_scene
  volume = scene.volume
  sep, report = separable.separable_tf(
      table,
      scene.jh.image,
      scene.jh.counts,
      gradient_scale_mm=float(np.mean(volume.spacing)),
  )
  assert report['support_iou'] > 0.9
  back = slicer.read_vp_json(slicer.write_vp_json(tmp_path / 'p.vp.json', sep))
  shot = vtk_render.render_separable(
      np.asarray(volume.hu),
      volume.spacing,
      back,
      scene.camera,
      scene.settings.step_mm,
  )
  assert shot.shape == ours.shape
  iou = vtk_render.silhouette_iou(ours, shot)
  assert iou >= 0.9, iou
  # The TF matters: a TF opaque only on air draws another silhouette.
  air = tables.SeparableTF(
      scalar_opacity=[[-1100, 0.02], [-900, 0.02], [-800, 0.0]],
      gradient_opacity=[[0, 1]],
      color=[[0, 1, 1, 1]],
  )
  other = vtk_render.render_separable(
      np.asarray(volume.hu),
      volume.spacing,
      air,
      scene.camera,
      scene.settings.step_mm,
  )
  assert vtk_render.silhouette_iou(ours, other) < 0.9


def test_generated_script_renders_the_2d_table(phantom_scene, tmp_path):
  scene, table, ours = phantom_scene
  nrrd_table.write_nrrd(tmp_path / 'tf.nrrd', table)
  path = vtk_script.write_vtk_script(
      tmp_path / 'render_tf_vtk.py', table, 'tf.nrrd'
  )
  spec = importlib.util.spec_from_file_location('render_tf_vtk', path)
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  nrrd_table.write_volume_nrrd(
      tmp_path / 'vol.nrrd', scene.volume.hu, scene.volume.spacing
  )
  image = script.read_volume(str(tmp_path / 'vol.nrrd'))
  assert image.GetDimensions() == scene.volume.shape[::-1]
  np.testing.assert_allclose(
      image.GetSpacing(), np.asarray(scene.volume.spacing)[::-1], rtol=1e-6
  )
  prop = script.volume_property(image)
  mapper = vtk.vtkGPUVolumeRayCastMapper()
  mapper.SetAutoAdjustSampleDistances(0)
  mapper.SetSampleDistance(table.unit_distance_mm)
  try:
    shot = vtk_render._shoot(image, prop, mapper, scene.camera)  # pylint: disable=protected-access
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f'no offscreen OpenGL for the GPU ray caster: {e}')
  if shot.max() == 0:
    pytest.skip('the GPU ray caster drew nothing (no usable OpenGL context)')
  assert vtk_render.silhouette_iou(ours, shot) >= 0.9


def test_generated_script_reads_a_dicom_folder_in_hu(tmp_path):
  """vtkDICOMImageReader applies the slope/intercept itself: the script
  must not apply it again (a 16-bit series with intercept -1024)."""
  import pydicom  # pylint: disable=g-import-not-at-top

  from rlhf_tf.data import dicom_write  # pylint: disable=g-import-not-at-top
  from rlhf_tf.data.volume import (
      make_volume,  # pylint: disable=g-import-not-at-top
  )

  hu = np.round(np.linspace(-1024, 2000, 8 * 9 * 10)).reshape(8, 9, 10)
  dicom_write.write_dicom_series(
      make_volume(hu.astype(np.float32), (2.0, 1.0, 1.5)), tmp_path / 'signed'
  )
  (tmp_path / 'unsigned').mkdir()
  for f in sorted((tmp_path / 'signed').iterdir()):
    d = pydicom.dcmread(f)
    raw = (
        d.pixel_array.astype(np.int32) * int(d.RescaleSlope)
        + int(d.RescaleIntercept)
        + 1024
    )
    d.PixelRepresentation, d.RescaleSlope, d.RescaleIntercept = 0, 1, -1024
    d.PixelData = raw.astype(np.uint16).tobytes()
    d.save_as(tmp_path / 'unsigned' / f.name)
  table = tables.TFTable(
      rgba=np.zeros((2, 2, 4)), hu_min=-1000.0, hu_max=3000.0, grad_max=100.0
  )
  path = vtk_script.write_vtk_script(tmp_path / 's.py', table, 'tf.nrrd')
  spec = importlib.util.spec_from_file_location('s', path)
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  image = script.read_volume(str(tmp_path / 'unsigned'))
  assert image.GetDimensions() == (10, 9, 8)
  assert image.GetScalarRange() == (-1024.0, 2000.0)
