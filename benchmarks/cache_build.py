"""Ray-cache build time for new views, the XLA build against the native one.

  .venv/bin/python benchmarks/cache_build.py            # pre-integrated
  .venv/bin/python benchmarks/cache_build.py --modes point  # the default

Cranium (or the synthetic head) at 256^2, the step and view of
``render.py --new-views`` (default step, azimuths 30 .. 120, elevation 10,
zoom 1.3), tensor_normals. Per mode (shaded / unshaded pre-integrated,
point = point sampling) and path (xla: settings.native_march=False, the
XLA sampling program + regroup; native: ``native_cache_build``, point
sampling ``native_point_build``, on CPU) the builds alternate view by view,
so both see the same load: the first view (compiles), then the median
wall and CPU (all threads) seconds of the later, new views. Prints JSON
with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render import load_test_volume  # noqa: E402

from rlhf_tf.render import camera as camera_lib  # noqa: E402
from rlhf_tf.render import (  # noqa: E402
    histogram,
    ray_cache,
    render_settings,
    sampling,
)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--modes', default='shaded,unshaded')
  p.add_argument('--paths', default='xla,native')
  p.add_argument('--size', type=int, default=256)
  args = p.parse_args(argv)
  volume, source = load_test_volume()
  spacing = tuple(float(s) for s in np.asarray(volume.spacing))
  packed = sampling.packed_volume(volume.hu, spacing)
  grad_mag = np.asarray(jnp.linalg.norm(packed[..., 1:], axis=-1))
  axes = histogram.make_axes(volume, grad_mag, hu_window=(-1000.0, 2000.0))
  step = float(min(spacing))
  base = render_settings.RenderSettings(step_mm=step, reference_step_mm=step)
  out = {'volume': source, 'load_average_before': list(os.getloadavg())}
  for mode in args.modes.split(','):
    settings = base
    paths = args.paths.split(',')
    if mode != 'point':
      settings = base.replace(
          preintegrate=True, tensor_normals=True, shading=mode == 'shaded'
      )
    wall = {k: [] for k in paths}
    cpu = {k: [] for k in paths}
    for az in (30.0, 60.0, 90.0, 120.0):
      view = camera_lib.head_camera(
          volume.shape,
          spacing,
          args.size,
          args.size,
          azimuth_deg=az,
          elevation_deg=10.0,
          zoom=1.3,
      )
      for path in paths:
        s = settings.replace(native_march=path == 'native')
        t, c = time.perf_counter(), time.process_time()
        cache = ray_cache.build_ray_cache(
            None, None, spacing, axes, view, 256, s, packed=packed
        )
        jax.block_until_ready(cache)
        wall[path].append(time.perf_counter() - t)
        cpu[path].append(time.process_time() - c)
        del cache
    out[mode] = {
        k: {
            'first_view_s': round(wall[k][0], 3),
            'new_view_s': round(float(np.median(wall[k][1:])), 3),
            'new_view_cpu_s': round(float(np.median(cpu[k][1:])), 3),
        }
        for k in paths
    }
  out['load_average_after'] = list(os.getloadavg())
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  main()
