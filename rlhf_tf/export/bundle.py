"""All export formats of one TF, written into one folder.

  tf.nrrd            the lossless 2D RGBA table over (HU, HU/mm)
  render_tf_vtk.py   ready-to-run VTK script (2D TF, GPU ray caster)
  tf.vp.json         3D Slicer volume property (separable approximation)
  tf.vp              legacy Slicer volume property (same)
  tf_paraview.json   ParaView transfer-function JSON (same)

The separable formats hold s(HU) x g(|grad|) fitted to the table with the JH
as weights (``separable.separable_tf``); their error is reported.
"""

from __future__ import annotations

import os
from typing import Optional

from rlhf_tf.export import nrrd_table
from rlhf_tf.export import paraview
from rlhf_tf.export import separable
from rlhf_tf.export import slicer
from rlhf_tf.export import tables
from rlhf_tf.export import vtk_script


def shading_of(settings) -> tables.Shading:
  """The renderer's RenderSettings lighting as a Shading."""
  return tables.Shading(shade=bool(settings.shading),
                        ambient=float(settings.ambient),
                        diffuse=float(settings.diffuse),
                        specular=float(settings.specular),
                        specular_power=float(settings.shininess))


def write_exports(folder: str, table: tables.TFTable, jh,
                  mean_spacing_mm: float, shading: tables.Shading,
                  provenance: Optional[dict] = None) -> dict:
  """Writes every format; returns {'files': {format: path}, 'separable':
  the approximation's report (support IoU on the JH, bins and voxels)}."""
  os.makedirs(folder, exist_ok=True)
  sep, report = separable.separable_tf(
      table, jh_weights=jh.image, jh_counts=jh.counts,
      gradient_scale_mm=float(mean_spacing_mm), shading=shading,
      tol=2e-3)  # opacity points within 0.002: far below the fit error
  path = lambda name: os.path.join(folder, name)
  files = dict(
      nrrd=nrrd_table.write_nrrd(path('tf.nrrd'), table),
      vtk_script=vtk_script.write_vtk_script(path('render_tf_vtk.py'), table,
                                             'tf.nrrd', shading),
      slicer_vp_json=slicer.write_vp_json(path('tf.vp.json'), sep,
                                          provenance),
      slicer_vp=slicer.write_vp(path('tf.vp'), sep),
      paraview=paraview.write_paraview(path('tf_paraview.json'), sep,
                                       provenance))
  report.update(scalar_opacity_points=len(sep.scalar_opacity),
                gradient_opacity_points=len(sep.gradient_opacity),
                color_points=len(sep.color),
                gradient_scale_mm=float(mean_spacing_mm))
  return dict(files=files, separable=report)
