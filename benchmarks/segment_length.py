"""Pre-integration's image quality against its re-render speed, by segment
length (issue 14: PSNR >= 6 dB better than VTK's at the default step, and
a cached re-render <= 1x VTK's time).

  .venv/bin/python benchmarks/segment_length.py  # ~3 min on 2 cores

A pre-integrated segment is sampled at both ends and at its midpoint, so at
segment length L it reads the volume every L / 2, while VTK's ray caster
point-samples every L. For segments of 1, 1.5 and 2 times the default step
(the smallest voxel spacing; 2x reads the volume as often as VTK at the
default step), on Cranium at 256^2 (the synthetic head without it), with
tensor_normals, shading off and on:

- 'quality': PSNR / SSIM / ring energy of the image (default and sharp TF)
  against the project's pre-integrated image at 1/8 of the default step,
  and VTK's at the default step against its own at 1/8
  (render_quality.compare);
- 'speed': the cached re-render (default TF) at each length and VTK's render
  of the same view at the default step, timed in turn (the VM's speed
  drifts within seconds), medians of --rounds; each re-render over VTK's.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import render  # noqa: E402
import render_quality  # noqa: E402
from vtk_reference import vtk_scene  # noqa: E402

from rlhf_tf.render import (  # noqa: E402
    cached_render,
    histogram,
    ray_cache,
    raymarch,
    render_settings,
    sampling,
)
from rlhf_tf.render import (
    camera as camera_lib,
)

LENGTHS = (1.0, 1.5, 2.0)  # Segment length over the default step.


def _project_quality(packed, spacing, axes, tables, view, settings, step):
  out = {}
  for name, table in tables.items():
    ref = raymarch.render(
        None,
        None,
        spacing,
        axes,
        table,
        view,
        settings.replace(step_mm=step / 8),
        packed=packed,
    )
    for m in LENGTHS:
      img = raymarch.render(
          None,
          None,
          spacing,
          axes,
          table,
          view,
          settings.replace(step_mm=step * m),
          packed=packed,
      )
      out[f'{name}_length_{m}x'] = render_quality.compare(img, ref)
  return out


def _vtk_quality(hu, spacing, axes, tables, view, settings, step, size):
  out = {}
  for name, table in tables.items():
    shots = []
    for div in (1, 8):
      scene = vtk_scene(
          hu, spacing, axes, np.asarray(table), size, step / div, settings
      )
      if isinstance(scene, dict):
        return scene
      scene.look(view)
      shots.append(scene.image() / 255.0)
    out[f'{name}_vtk'] = render_quality.compare(*shots)
  return out


def _speed(
    packed, spacing, axes, table, view, settings, step, size, hu, rounds, do_vtk
):
  """Re-render medians per length and VTK's, in turn, and their ratios."""
  renders = []
  for m in LENGTHS:
    st = settings.replace(step_mm=step * m)
    cache = ray_cache.build_ray_cache(
        None, None, spacing, axes, view, size, st, packed=packed
    )
    renders.append(
        lambda c=cache, st=st: cached_render.render_cached(c, table, st)
    )
  scene = {'skipped': '--no-vtk'}
  if do_vtk:
    scene = vtk_scene(
        hu, spacing, axes, np.asarray(table), size, step, settings
    )
  times = [[] for _ in renders]
  vtk_times = []
  for fn in renders:
    jax.block_until_ready(fn())
  if not isinstance(scene, dict):
    scene.look(view)
  for _ in range(rounds):
    for fn, out in zip(renders, times):
      t = time.perf_counter()
      jax.block_until_ready(fn())
      out.append(time.perf_counter() - t)
    if not isinstance(scene, dict):
      vtk_times.append(scene.render_s())
  out = {
      f'cached_render_length_{m}x_s': statistics.median(t)
      for m, t in zip(LENGTHS, times)
  }
  if vtk_times:
    vtk_s = statistics.median(vtk_times)
    out['vtk_s'] = vtk_s
    for m, t in zip(LENGTHS, times):
      out[f'cached_render_length_{m}x_over_vtk'] = statistics.median(t) / vtk_s
  else:
    out['vtk'] = scene
  return out


def run(size=256, rounds=15, do_vtk=True):
  volume, source = render.load_test_volume()
  spacing = tuple(float(s) for s in np.asarray(volume.spacing))
  packed = sampling.packed_volume(volume.hu, spacing)
  grad_mag = np.asarray(jnp.linalg.norm(packed[..., 1:], axis=-1))
  axes = histogram.make_axes(volume, grad_mag, hu_window=(-1000.0, 2000.0))
  step = float(min(spacing))
  view = camera_lib.head_camera(
      volume.shape,
      spacing,
      size,
      size,
      azimuth_deg=30.0,
      elevation_deg=10.0,
      zoom=1.3,
  )
  tables = {
      'default': jnp.asarray(render.demo_tf(axes)),
      'sharp': jnp.asarray(render_quality.sharp_tf(axes)),
  }
  hu = np.asarray(volume.hu)
  out = {
      'volume': source,
      'image': size,
      'default_step_mm': step,
      'lengths_over_step': list(LENGTHS),
  }
  for shading in (False, True):
    settings = render_settings.RenderSettings(
        step_mm=step,
        reference_step_mm=step,
        preintegrate=True,
        tensor_normals=True,
        shading=shading,
    )
    quality = _project_quality(
        packed, spacing, axes, tables, view, settings, step
    )
    if do_vtk:
      quality.update(
          _vtk_quality(hu, spacing, axes, tables, view, settings, step, size)
      )
    out['shading_on' if shading else 'shading_off'] = {
        'quality': quality,
        'speed': _speed(
            packed,
            spacing,
            axes,
            tables['default'],
            view,
            settings,
            step,
            size,
            hu,
            rounds,
            do_vtk,
        ),
    }
  out['load_average_1_5_15'] = list(os.getloadavg())
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--size', type=int, default=256)
  p.add_argument('--rounds', type=int, default=15)
  p.add_argument('--no-vtk', action='store_true')
  args = p.parse_args(argv)
  print(json.dumps(run(args.size, args.rounds, not args.no_vtk), indent=1))


if __name__ == '__main__':
  main()
