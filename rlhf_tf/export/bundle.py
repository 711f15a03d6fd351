"""All export formats of one TF, written into one folder.

  tf.nrrd            the lossless 2D RGBA table over (HU, HU/mm)
  render_tf_vtk.py   ready-to-run VTK script (2D TF, GPU ray caster)
  tf.vp.json         3D Slicer volume property (separable approximation)
  tf.vp              legacy Slicer volume property (same)
  tf_paraview.json   ParaView transfer-function JSON (same)
  volume.nrrd        (with a volume) the scan in HU, for Slicer / the script
  open_in_slicer.py  (with a volume) Slicer --python-script: loads
                     volume.nrrd and tf.vp.json and turns volume rendering on

The separable formats hold s(HU) x g(|grad|) fitted to the table with the JH
as weights (``separable.separable_tf``); their error is reported.
"""

from __future__ import annotations

import os
from typing import Optional

from rlhf_tf.export import (
    nrrd_table,
    paraview,
    separable,
    slicer,
    tables,
    vtk_script,
)


def shading_of(settings) -> tables.Shading:
  """The renderer's RenderSettings lighting as a Shading."""
  return tables.Shading(
      shade=bool(settings.shading),
      ambient=float(settings.ambient),
      diffuse=float(settings.diffuse),
      specular=float(settings.specular),
      specular_power=float(settings.shininess),
  )


_SLICER_SCRIPT = '''"""Opens the rlhf_tf proposal in 3D Slicer (5.x):

  Slicer --python-script {name}

Loads volume.nrrd and tf.vp.json, written beside this script, and shows the
volume rendering with the proposal's volume property.
"""
import os

import slicer

here = os.path.dirname(os.path.abspath(__file__))
volume_path = os.path.join(here, 'volume.nrrd')
property_path = os.path.join(here, 'tf.vp.json')
for path in (volume_path, property_path):
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{{path}} not found: keep {name} in the '
                            f'export folder it was written to')
volume = slicer.util.loadVolume(volume_path)
prop = slicer.util.loadNodeFromFile(property_path, 'TransferFunctionFile')
logic = slicer.modules.volumerendering.logic()
display = logic.CreateDefaultVolumeRenderingNodes(volume)
display.GetVolumePropertyNode().Copy(prop)
display.SetVisibility(True)
slicer.util.resetThreeDViews()
'''


def write_slicer_script(folder: str) -> str:
  """open_in_slicer.py next to volume.nrrd and tf.vp.json.

  Only documented Slicer calls: slicer.util.loadVolume and
  CreateDefaultVolumeRenderingNodes / GetVolumePropertyNode().Copy /
  SetVisibility (Slicer's script repository, volumes.md), loadNodeFromFile
  with file type 'TransferFunctionFile' (vtkSlicerVolumeRenderingReader:
  *.vp and *.vp.json), slicer.util.resetThreeDViews. Slicer itself is not on
  the build machine: tests/test_export_slicer_script.py checks the script
  compiles, reads only the files beside it, and makes these calls in this
  order, against a recording stand-in for the slicer module.
  """
  path = os.path.join(folder, 'open_in_slicer.py')
  with open(path, 'w') as f:
    f.write(_SLICER_SCRIPT.format(name='open_in_slicer.py'))
  return path


def write_exports(
    folder: str,
    table: tables.TFTable,
    jh,
    mean_spacing_mm: float,
    shading: tables.Shading,
    provenance: Optional[dict] = None,
    volume=None,
) -> dict:
  """Writes every format; returns {'files': {format: path}, 'separable':
  the approximation's report (support IoU on the JH, bins and voxels)}."""
  os.makedirs(folder, exist_ok=True)
  sep, report = separable.separable_tf(
      table,
      jh_weights=jh.image,
      jh_counts=jh.counts,
      gradient_scale_mm=float(mean_spacing_mm),
      shading=shading,
      tol=2e-3,
  )  # opacity points within 0.002: far below the fit error
  path = lambda name: os.path.join(folder, name)
  files = dict(
      nrrd=nrrd_table.write_nrrd(path('tf.nrrd'), table),
      vtk_script=vtk_script.write_vtk_script(
          path('render_tf_vtk.py'), table, 'tf.nrrd', shading
      ),
      slicer_vp_json=slicer.write_vp_json(path('tf.vp.json'), sep, provenance),
      slicer_vp=slicer.write_vp(path('tf.vp'), sep),
      paraview=paraview.write_paraview(
          path('tf_paraview.json'), sep, provenance
      ),
  )
  if volume is not None:
    files['volume'] = nrrd_table.write_volume_nrrd(
        path('volume.nrrd'), volume.hu, volume.spacing
    )
    files['open_in_slicer'] = write_slicer_script(folder)
  report.update(
      scalar_opacity_points=len(sep.scalar_opacity),
      gradient_opacity_points=len(sep.gradient_opacity),
      color_points=len(sep.color),
      gradient_scale_mm=float(mean_spacing_mm),
  )
  return dict(files=files, separable=report)
