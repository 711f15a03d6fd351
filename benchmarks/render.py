"""Raymarcher benchmark: naive map_coordinates vs direct vs cached re-render,
the TF-gradient cost, and VTK's CPU ray caster when ``import vtk`` works.

  .venv/bin/python benchmarks/render.py            # 256^2, ~256 samples/ray
  .venv/bin/python benchmarks/render.py --quality  # + issue-14 figures
  .venv/bin/python benchmarks/render.py --large    # + 547x421x547 at 512^2

Prints one JSON object. Times are medians over --repeats runs after
compilation (first call timed separately as 'compile_s').

--new-views adds only the 'new_views' blocks of --quality.

--preintegration-cost prints only the 'preintegration_cost' block of
--quality (and the load average), without the figures above, with VTK's
time on the same view and step and each direct time over it.

--quality adds (benchmarks/render_quality.py), at the scene's default step
(the smallest voxel spacing): 'quality', PSNR / SSIM / ring energy of each
renderer (the project's point-sampled default, 'project', and with
pre-integrated classification, 'project_preintegrated', also with shading
from the gradient's structure tensor, 'project_preintegrated_tensor'
(shading on only), and VTK's) against itself at 1/8 of the step, default
and sharp TF, shading on and off (and VTK against itself at 1/32 of the
step: its reference's convergence);
'preintegration_cost', cached re-render, cache build and direct render
with and without pre-integration, interleaved, and the cache sizes;
'new_views', direct-render, cache-build and first cached-render time of
views never rendered before, the compile time and number of programs
compiled per new view, the cached gradient / forward ratio, VTK's time on
the fixed view and step in the same run, each time over VTK's, and the load
average: with the default settings (point sampling, shading on), and in
'new_views_preintegrated_tensor' / '..._unshaded' with pre-integration and
tensor_normals (the quality goals' settings), shading on / off, each with
VTK at the same shading. The '*_over_vtk' figures divide by VTK's time on
the fixed view (azimuth 30); the 'same_view_*' ones by VTK's on each new
view itself, with the cached re-render and VTK's render timed in turn
(render_quality.new_views): like for like, where the views' work differs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import render_quality  # noqa: E402
from timing import time_calls, time_in_turn  # noqa: E402
from vtk_reference import bench_vtk, vtk_scene  # noqa: E402

from rlhf_tf.data.volume import make_volume  # noqa: E402
from rlhf_tf.render import (
    cached_render,  # noqa: E402
    histogram,  # noqa: E402
    ray_cache,  # noqa: E402
    raymarch,  # noqa: E402
    raymarch_naive,  # noqa: E402
    render_settings,  # noqa: E402
    sampling,  # noqa: E402
)
from rlhf_tf.render import camera as camera_lib  # noqa: E402


def _synthetic_head(shape=(108, 256, 256), spacing=(1.5, 0.957, 0.957)):
  """A head-like volume: air, skin/fat shell, skull, brain, when the project's
  phantom is unavailable."""
  try:
    from rlhf_tf.data.phantom import (
        make_head_phantom,  # pylint: disable=g-import-not-at-top
    )

    vol = make_head_phantom(jax.random.key(0), shape)
    return vol, 'rlhf_tf.data.phantom.make_head_phantom'
  except (ImportError, FileNotFoundError, TypeError) as e:
    note = f'phantom unavailable ({type(e).__name__}); ellipsoid head'
  ext = np.asarray(shape) * np.asarray(spacing)
  z, y, x = [
      (np.arange(n, dtype=np.float32) + 0.5) * s - e / 2
      for n, s, e in zip(shape, spacing, ext)
  ]
  hu = np.empty(shape, np.float32)
  rng = np.random.default_rng(0)
  for k in range(shape[0]):  # Slice by slice: low peak memory at 547^3.
    r = np.sqrt(
        (z[k] / (0.45 * ext[0])) ** 2
        + (y[:, None] / (0.42 * ext[1])) ** 2
        + (x[None, :] / (0.36 * ext[2])) ** 2
    )
    sl = np.full(shape[1:], -1000.0, np.float32)
    sl[r < 1.0] = 40.0  # Soft tissue.
    sl[(r < 0.93) & (r > 0.85)] = 900.0  # Skull.
    sl[r <= 0.85] = 30.0  # Brain.
    hu[k] = sl + rng.standard_normal(shape[1:], np.float32) * 20.0
  return make_volume(hu, spacing, name='synthetic_head'), note


def load_test_volume():
  """(Volume, source): the real Cranium CT if fetched, else a synthetic head."""
  try:
    from rlhf_tf.data.sample_fetch import (
        load_cranium,  # pylint: disable=g-import-not-at-top
    )

    return load_cranium(), 'Cranium (InVesalius example CT)'
  except (ImportError, FileNotFoundError) as e:
    vol, note = _synthetic_head()
    return vol, f'{note}; Cranium unavailable: {type(e).__name__}'


def demo_tf(axes: histogram.JHAxes, bins: int = 256) -> np.ndarray:
  """A skin + bone TF table [bins, bins, 4]: skin (-300..200 HU, faint, at
  non-trivial gradients), bone (>= 350 HU, opaque-ish, ivory)."""
  c = (np.arange(bins) + 0.5) / bins
  hu = axes.x_to_hu(c)[None, :]
  grad = axes.y_to_grad(c)[:, None]
  g_on = np.clip(grad / (0.05 * axes.grad_max), 0, 1)
  skin = np.clip(1 - np.abs(hu + 50) / 250, 0, 1) * g_on * 0.15
  bone = np.clip((hu - 350) / 400, 0, 1) * 0.8
  table = np.zeros((bins, bins, 4), np.float32)
  table[..., 0] = np.where(bone > skin, 0.95, 0.9)
  table[..., 1] = np.where(bone > skin, 0.9, 0.6)
  table[..., 2] = np.where(bone > skin, 0.8, 0.5)
  table[..., 3] = np.maximum(skin, bone)
  return table


def run(
    size=256,
    samples=256,
    repeats=5,
    do_vtk=True,
    volume=None,
    source=None,
    quality=False,
):
  if volume is None:
    volume, source = load_test_volume()
  hu = jnp.asarray(volume.hu)
  spacing = tuple(float(s) for s in np.asarray(volume.spacing))
  packed = sampling.packed_volume(volume.hu, spacing)
  grad = packed[..., 1:]
  grad_mag = np.asarray(jnp.linalg.norm(grad, axis=-1))
  axes = histogram.make_axes(volume, grad_mag, hu_window=(-1000.0, 2000.0))
  diag = float(np.linalg.norm(np.asarray(volume.extent_mm)))
  step = diag / samples
  settings = render_settings.RenderSettings(
      step_mm=step, reference_step_mm=1.0, shading=True
  )
  view = camera_lib.head_camera(
      volume.shape,
      spacing,
      size,
      size,
      azimuth_deg=30.0,
      elevation_deg=10.0,
      zoom=1.3,
  )
  table = jnp.asarray(demo_tf(axes))
  out = {
      'device': jax.devices()[0].device_kind,
      'cpu_count': os.cpu_count(),
      'platform': platform.platform(),
      'volume': source,
      'volume_shape': list(volume.shape),
      'spacing_mm': list(spacing),
      'image': [size, size],
      'samples_per_ray': sampling.num_samples(volume.shape, spacing, step),
      'step_mm': step,
  }
  naive = lambda: raymarch_naive.render_naive(
      hu, grad, spacing, axes, table, view, settings
  )
  direct = lambda: raymarch.render(
      None, None, spacing, axes, table, view, settings, packed=packed
  )
  out['naive_compile_s'], out['naive_s'], _ = time_calls(
      naive, max(1, repeats // 2)
  )
  out['direct_compile_s'], out['direct_s'], _ = time_calls(direct, repeats)
  t = time.perf_counter()
  cache = ray_cache.build_ray_cache(
      None, None, spacing, axes, view, 256, settings, packed=packed
  )
  jax.block_until_ready(cache)
  out['cache_build_s'] = time.perf_counter() - t
  out['cache_samples'] = cache.num_samples
  out['cache_mb'] = cache.nbytes / 2**20
  cached = lambda: cached_render.render_cached(cache, table, settings)
  out['cached_compile_s'], out['cached_s'], _ = time_calls(cached, repeats)
  loss = lambda t: jnp.mean(
      cached_render.render_cached(cache, t, settings)[..., :3]
  )
  grad_fn = jax.jit(jax.grad(loss))
  _, out['cached_grad_s'], _ = time_calls(lambda: grad_fn(table), repeats)
  out['speedup_cached_vs_naive'] = out['naive_s'] / out['cached_s']
  out['grad_over_forward'] = out['cached_grad_s'] / out['cached_s']
  img_n, img_d, img_c = naive(), direct(), cached()
  out['max_abs_diff_direct_naive'] = float(jnp.abs(img_d - img_n).max())
  out['max_abs_diff_cached_direct'] = float(jnp.abs(img_c - img_d).max())
  out['mean_alpha'] = float(img_d[..., 3].mean())
  vtk_img = None
  if do_vtk:
    out['vtk'] = bench_vtk(
        np.asarray(volume.hu),
        spacing,
        axes,
        np.asarray(table),
        size,
        step,
        settings,
        view,
    )
    vtk_img = out['vtk'].pop('image', None)
  out['direct_mean_rgb'] = float(img_d[..., :3].mean())
  if quality:
    out.update(
        quality_figures(
            volume,
            packed,
            spacing,
            axes,
            size,
            do_vtk,
            image_quality=quality != 'new_views',
        )
    )
  return out, img_d, vtk_img


def quality_figures(
    volume, packed, spacing, axes, size, do_vtk, image_quality=True
):
  """{'quality': ..., 'new_views': ...} at the default step (issue 14);
  image_quality=False: 'new_views' only."""
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
      'default': jnp.asarray(demo_tf(axes)),
      'sharp': jnp.asarray(render_quality.sharp_tf(axes)),
  }
  hu = np.asarray(volume.hu)

  def vtk_fn(table, step_mm, settings):
    return bench_vtk(
        hu,
        spacing,
        axes,
        np.asarray(table),
        size,
        step_mm,
        settings,
        view,
        repeats=0,
    ).get('image')

  out = {'quality_step_mm': step}
  if image_quality:
    out['quality'] = render_quality.quality(
        packed,
        spacing,
        axes,
        tables,
        view,
        step,
        vtk_fn=vtk_fn if do_vtk else None,
        variants=(
            ('project', {}),
            ('project_preintegrated', {'preintegrate': True}),
            (
                'project_preintegrated_tensor',
                {'preintegrate': True, 'tensor_normals': True},
            ),
        ),
    )
    out['preintegration_cost'] = render_quality.preintegration_cost(
        packed, spacing, axes, tables['default'], view, step
    )
    out['preintegration_cost']['load_average_1_5_15'] = list(os.getloadavg())
  point = render_settings.RenderSettings(step_mm=step, reference_step_mm=step)
  out['new_views'] = new_view_figures(
      packed, spacing, axes, tables['default'], point, view, size, hu, do_vtk
  )
  # The quality goals' settings (issue 14), shading on and off, same run.
  for name, shading in (
      ('new_views_preintegrated_tensor', True),
      ('new_views_preintegrated_tensor_unshaded', False),
  ):
    out[name] = new_view_figures(
        packed,
        spacing,
        axes,
        tables['default'],
        point.replace(preintegrate=True, tensor_normals=True, shading=shading),
        view,
        size,
        hu,
        do_vtk,
    )
  return out


def new_view_figures(
    packed, spacing, axes, table, settings, view, size, hu, do_vtk
):
  """render_quality.new_views of these settings, the cached gradient /
  forward on view, VTK's time on the same view, step and shading, each
  time over VTK's, and the load average."""
  scene = None
  if do_vtk:
    scene = vtk_scene(
        hu, spacing, axes, np.asarray(table), size, settings.step_mm, settings
    )
  views = render_quality.new_views(
      packed,
      spacing,
      axes,
      table,
      settings,
      size,
      vtk=None if isinstance(scene, dict) else scene,
  )
  # The gradient of a cached render w.r.t. the TF table vs its forward.
  cache = ray_cache.build_ray_cache(
      None, None, spacing, axes, view, 256, settings, packed=packed
  )
  fwd = jax.jit(lambda t: cached_render.render_cached(cache, t, settings))
  grad = jax.jit(
      jax.grad(
          lambda t: jnp.mean(
              cached_render.render_cached(cache, t, settings)[..., :3]
          )
      )
  )
  # In turn, 9 rounds: the ratio is a goal (<= 4), and 3 calls of each
  # alone moved it by +-15 % from run to run.
  views['cached_forward_s'], views['cached_grad_s'] = time_in_turn(
      (lambda: fwd(table), lambda: grad(table)), 9
  )
  views['grad_over_forward'] = (
      views['cached_grad_s'] / views['cached_forward_s']
  )
  if do_vtk:
    vtk = bench_vtk(
        hu,
        spacing,
        axes,
        np.asarray(table),
        size,
        settings.step_mm,
        settings,
        view,
    )
    vtk.pop('image', None)
    vtk_s = vtk.get('median_s')
    views['vtk_s'] = vtk_s
    if vtk_s:
      for k in (
          'direct_new_view_s',
          'direct_run_s',
          'direct_xla_new_view_s',
          'direct_xla_run_s',
          'cache_build_new_view_s',
          'cached_render_new_view_s',
          'cached_render_run_s',
      ):
        if k in views:
          views[k.replace('_s', '') + '_over_vtk'] = views[k] / vtk_s
  views['load_average_1_5_15'] = list(os.getloadavg())
  return views


def preintegration_cost_only(size=256, repeats=3):
  """{'preintegration_cost': ...} of --quality alone, Cranium (or the
  stand-in) at its default step, with the load average."""
  volume, source = load_test_volume()
  spacing = tuple(float(s) for s in np.asarray(volume.spacing))
  packed = sampling.packed_volume(volume.hu, spacing)
  grad_mag = np.asarray(jnp.linalg.norm(packed[..., 1:], axis=-1))
  axes = histogram.make_axes(volume, grad_mag, hu_window=(-1000.0, 2000.0))
  view = camera_lib.head_camera(
      volume.shape,
      spacing,
      size,
      size,
      azimuth_deg=30.0,
      elevation_deg=10.0,
      zoom=1.3,
  )
  # VTK on the same view and step, in the same run, before and after the
  # project's (the load moves): each direct time over VTK's mean of both.
  settings = render_settings.RenderSettings(
      step_mm=float(min(spacing)), reference_step_mm=float(min(spacing))
  )
  vtk = lambda: bench_vtk(
      np.asarray(volume.hu),
      spacing,
      axes,
      demo_tf(axes),
      size,
      settings.step_mm,
      settings,
      view,
      repeats=max(3, repeats),
  ).get('median_s')
  vtk_before = vtk()
  cost = render_quality.preintegration_cost(
      packed,
      spacing,
      axes,
      jnp.asarray(demo_tf(axes)),
      view,
      float(min(spacing)),
      repeats,
  )
  cost['vtk_before_after_s'] = [vtk_before, vtk()]
  cost['vtk_s'] = (
      statistics.mean(cost['vtk_before_after_s']) if vtk_before else None
  )
  if cost['vtk_s']:
    for k in [k for k in cost if k.endswith('direct_s')]:
      cost[k[:-2] + '_over_vtk'] = cost[k] / cost['vtk_s']
  cost['load_average_1_5_15'] = list(os.getloadavg())
  return {'volume': source, 'preintegration_cost': cost}


def run_large(size=512):
  """547x421x547 synthetic head at 512^2: first-call times and peak RSS."""
  shape = (547, 421, 547)
  vol, _ = _synthetic_head(shape, (0.2, 0.2, 0.2))
  spacing = tuple(float(s) for s in vol.spacing)
  extent = vol.extent_mm
  packed = sampling.packed_volume(vol.hu, spacing)
  del vol
  axes = histogram.JHAxes(hu_min=-1000.0, hu_max=2000.0, grad_max=2000.0)
  step = float(np.linalg.norm(extent)) / 256
  settings = render_settings.RenderSettings(step_mm=step)
  view = camera_lib.head_camera(
      shape, spacing, size, size, azimuth_deg=30.0, zoom=1.3
  )
  table = jnp.asarray(demo_tf(axes))
  t = time.perf_counter()
  img = raymarch.render(
      None, None, spacing, axes, table, view, settings, packed=packed
  )
  jax.block_until_ready(img)
  direct_first = time.perf_counter() - t
  rss_render = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  t = time.perf_counter()
  cache = ray_cache.build_ray_cache(
      None, None, spacing, axes, view, 256, settings, packed=packed
  )
  jax.block_until_ready(cache)
  build = time.perf_counter() - t
  del packed
  _, cached_s, _ = time_calls(
      lambda: cached_render.render_cached(cache, table, settings), 3
  )
  loss = jax.jit(
      jax.grad(
          lambda t: jnp.mean(
              cached_render.render_cached(cache, t, settings)[..., :3]
          )
      )
  )
  _, grad_s, _ = time_calls(lambda: loss(table), 3)
  rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  return {
      'volume_shape': list(shape),
      'spacing_mm': list(spacing),
      'image': [size, size],
      'samples_per_ray': sampling.num_samples(shape, spacing, step),
      'direct_first_call_s': direct_first,
      'cache_build_s': build,
      'cache_samples': cache.num_samples,
      'cache_mb': cache.nbytes / 2**20,
      'cached_s': cached_s,
      'cached_grad_s': grad_s,
      'peak_rss_gb_after_direct': rss_render,
      'peak_rss_gb': rss_gb,
      'mean_alpha': float(img[..., 3].mean()),
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--size', type=int, default=256)
  p.add_argument('--samples', type=int, default=256)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--no-vtk', action='store_true')
  p.add_argument('--large', action='store_true')
  p.add_argument(
      '--quality',
      action='store_true',
      help='PSNR / ring energy vs 1/8 step, new-view times',
  )
  p.add_argument(
      '--new-views',
      action='store_true',
      help='only the new-view times (with VTK in the same run)',
  )
  p.add_argument(
      '--preintegration-cost',
      action='store_true',
      help='only the cost of pre-integration (cached, build, direct)',
  )
  p.add_argument('--save', type=str, default='', help='PNG of the direct image')
  args = p.parse_args(argv)
  if args.preintegration_cost:
    print(
        json.dumps(preintegration_cost_only(args.size, args.repeats), indent=1)
    )
    return
  out, img, vtk_img = run(
      args.size,
      args.samples,
      args.repeats,
      not args.no_vtk,
      quality='new_views' if args.new_views else args.quality,
  )
  if args.save:
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    both = np.clip(np.asarray(img[..., :3]), 0, 1)
    if vtk_img is not None:
      both = np.concatenate([both, vtk_img / 255.0], axis=1)
    plt.imsave(args.save, both)
  if args.large:
    out['large'] = run_large()
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  main()
