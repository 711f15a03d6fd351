"""Image-quality and new-view figures of the renderer for benchmarks/render.py.

Quality (issue 14): every renderer (the project's, VTK's) is compared with
itself at 1/8 of the step, on luminance Y = 0.2126 R + 0.7152 G + 0.0722 B:

  psnr_db     PSNR of Y(step) vs Y(step / 8) (peak 1)
  ssim        SSIM of the same pair (skimage, data_range 1)
  ring_rms    RMS of the high-pass part of Y(step) - Y(step / 8): the
              difference minus its Gaussian blur (sigma 2 px), i.e. the
              wood-grain rings and seams, not a smooth brightness shift.

Measured (issue 14, item 1) with the 'quality' block of

  .venv/bin/python benchmarks/render.py --quality

on Cranium, 256^2, default step 0.957 mm (the smallest voxel spacing),
2 shared CPU cores: luminance PSNR (dB) / ring_rms vs each renderer's own
1/8-step reference; 'project' = point sampling (the default), 'pre' =
settings.preintegrate=True, before (session 5: each segment's middle on the
cubic Hermite curve through its ends' values and gradient slopes) and now
(each segment's midpoint sampled, two linear halves; one --quality run at
load 11-13, the other columns repeat session 5's to the digit):

  TF, shading   project        pre, Hermite   pre, sampled   VTK 9.7.2
  default, off  37.07 / 0.0137 38.66 / 0.0095 46.29 / 0.0024 38.95 / 0.0106
  default, on   36.61 / 0.0144 37.78 / 0.0107 44.16 / 0.0044 42.44 / 0.0066
  sharp, off    28.71 / 0.0348 32.86 / 0.0187 39.71 / 0.0081 33.01 / 0.0207
  sharp, on     27.57 / 0.0398 31.77 / 0.0223 37.78 / 0.0110 35.26 / 0.0159

WHERE THE ERROR WAS (error images default step vs 1/8 step): 92-94 % of the
squared error of point sampling and of the Hermite version sat in 1 % of
the pixels, on the CT's thin head-rest shell met at grazing angles: its
trilinear HU peaks between two samples one voxel apart, and neither a point
sample nor a cubic through the ends' values and central-difference slopes
sees the peak (with the trilinear field's exact slopes: 36.2 dB sharp/off).
Sampling the midpoint fixes most of it; 3 samples inside a segment give
50.5 dB (sharp, off) and 43.5 dB (sharp, on). The gradient axis held
constant per segment costs 1.5 dB shaded with the default TF (one mean row
for both halves: 42.6 vs 44.1 dB); shading at the emission- rather than
the extinction-weighted centroid gains only 0.15 dB. With shading the
shell still dominates (66-81 % of the squared error): the headlight terms
from the normalised interpolated gradient change faster than a half step
there (VTK shades per voxel and interpolates the shaded colours).

SHADING FROM THE STRUCTURE TENSOR (settings.tensor_normals): on those thin
plates the trilinear mean of the voxels' gradients cancels at the crest
(the two faces' gradients point opposite ways), so the normalised mean
swings to whatever small component is left (a ramp along the plate, noise)
within a fraction of a voxel: the headlight term jumps there (on a plate
near Cranium's orbit, 0.96 -> 0.24 -> 0.72 within 3/8 of a voxel), which
no sampling at a half step resolves. The trilinear mean of g g^T (the
structure tensor, Bigun & Granlund 1987) averages orientations without
their sign, as two-sided shading needs: d = sqrt(l^T J l / tr J), the mean
gradient's d wherever the gradient is constant. Pre-integrated, shading
on, vs the 1/8-step reference (own script, same view): default 44.16 ->
47.04 dB, sharp 37.78 -> 40.04 dB (per-voxel shading interpolated as VTK
does: 47.02 / 40.14 dB, but it needs a shading volume per view).

A CREST BETWEEN THE HALF-STEP SAMPLES: with shading fixed, 60-75 % of the
remaining error was again the thin shell's crest, now between a segment
end and its midpoint. Each half is split where its ends' exact slopes
along the ray (the trilinear field's derivative, from the same 8 gathers)
bracket an extremum, at the stationary point of the cubic Hermite through
them (preintegration.extremum; elsewhere nothing changes). Same script
and reference (tensor_normals at 1/8 step without the split, converged),
pre-integrated + tensor_normals, shading on: default 47.04 -> 50.51 dB
(ring 0.0021 -> 0.0019), sharp 40.04 -> 42.83 dB (0.0074 -> 0.0050), vs
VTK + 6 = 48.44 / 41.26 dB. Cost: four pieces per segment (eight 16-value
gathers instead of four) and du, du_mid in the cache (32 bytes per row
with shading instead of 24).

THE REFERENCES: ours are converged (1/8 vs 1/16 step: 50-60 dB). VTK's are
not: its fixed-point compositing drifts as the step shrinks (default TF,
PSNR of 1/8 vs 1/32 step 37.1 dB off, 35.8 dB on; step vs 1/32 step 34.3
and 33.9 dB, not 39.0 and 42.4), so VTK's figure against its own 1/8-step
reference flatters it for the default TF. Nor is VTK's TF the cause of its
edge: our point sampling of VTK's 1D approximation of the TF (every 4th
bin, gradient-opacity ramp) gives 27.9 dB sharp/off (VTK 33.0).

Cost of pre-integration (why it is off by default; 'preintegration_cost',
same run, interleaved, load 11.7-13): a segment samples the volume twice
(end and midpoint) and classifies two halves (four 16-value gathers),
against one sample and one gather of point sampling. Cached re-render
4.50 s vs 0.217 s (20.7x; issue 14's budget for a default: +20 %), cache
build 28.4 s vs 4.0 s (7.1x), direct render 9.6 s vs 3.1 s (3.1x), cache
235 MB vs 118 MB. XLA:CPU compiles the cached segment step to ~50 kernels
(31 fusions, 18 copies) against ~4.5 per point-sampled step, so its cost is
per-kernel overhead more than arithmetic; not treated.

New views: a turntable of azimuths, each view rendered for the first time
(compilation, if any, included), then once more (run time only): the direct
renderer, the ray-cache build and the first cached render of the new cache,
and how many programs each new view compiled.
"""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np
from scipy import ndimage

from rlhf_tf.render import (
    cache_sampling,
    cached_render,
    empty_space,
    ray_cache,
    raymarch,
    render_settings,
)
from rlhf_tf.render import camera as camera_lib


def luminance(rgb) -> np.ndarray:
  rgb = np.asarray(rgb, np.float64)[..., :3]
  return rgb @ np.array([0.2126, 0.7152, 0.0722])


def compare(image, reference) -> dict:
  """psnr_db, ssim and ring_rms of an RGB(A) image vs its reference."""
  from skimage.metrics import (
      structural_similarity,  # pylint: disable=g-import-not-at-top
  )

  y, ref = luminance(image), luminance(reference)
  diff = y - ref
  mse = float(np.mean(diff**2))
  high = diff - ndimage.gaussian_filter(diff, 2.0)
  return {
      'psnr_db': float(10 * np.log10(1.0 / max(mse, 1e-20))),
      'ssim': float(structural_similarity(y, ref, data_range=1.0)),
      'ring_rms': float(np.sqrt(np.mean(high**2))),
  }


def sharp_tf(axes, bins: int = 256) -> np.ndarray:
  """A sharp bone TF [bins, bins, 4]: alpha 0.8 from 400 HU up (a step one
  bin wide), ivory; the worst case for wood-grain rings."""
  c = (np.arange(bins) + 0.5) / bins
  hu = axes.x_to_hu(c)[None, :]
  table = np.zeros((bins, bins, 4), np.float32)
  table[..., :3] = (0.95, 0.9, 0.8)
  table[..., 3] = np.broadcast_to(np.where(hu >= 400.0, 0.8, 0.0), (bins, bins))
  return table


def quality(
    packed,
    spacing,
    axes,
    tables: dict,
    view,
    step_mm: float,
    shading_modes=(False, True),
    vtk_fn=None,
    variants=(('project', {}),),
) -> dict:
  """{tf name: {'shading_on/off': {variant: compare(), 'vtk': compare()}}}.

  With VTK also 'vtk_vs_1_32_step' (VTK's image vs its own at 1/32 step) and
  'vtk_1_8_vs_1_32_step' (its 1/8-step reference vs 1/32): how far VTK's
  reference is from converged.

  variants: (name, RenderSettings changes) of the project's renderer, each
    compared with its own 1/8-step reference.
  vtk_fn(table, step_mm, settings) -> [H, W, 3] uint8 image or None.
  """
  out = {}
  for name, table in tables.items():
    out[name] = {}
    for shading in shading_modes:
      settings = render_settings.RenderSettings(
          step_mm=step_mm, reference_step_mm=step_mm, shading=shading
      )
      row = {}
      for variant, changes in variants:
        if not shading and changes.get('tensor_normals'):
          continue  # Only the shading terms differ.
        st = settings.replace(**changes)
        img = raymarch.render(
            None, None, spacing, axes, table, view, st, packed=packed
        )
        ref = raymarch.render(
            None,
            None,
            spacing,
            axes,
            table,
            view,
            st.replace(step_mm=step_mm / 8),
            packed=packed,
        )
        row[variant] = compare(img, ref)
      if vtk_fn is not None:
        v, v_ref, v_fine = [
            vtk_fn(table, step_mm / div, settings) for div in (1, 8, 32)
        ]
        if v is not None and v_ref is not None:
          row['vtk'] = compare(v / 255.0, v_ref / 255.0)
          if v_fine is not None:  # Is VTK's 1/8-step reference converged?
            row['vtk_vs_1_32_step'] = compare(v / 255.0, v_fine / 255.0)
            row['vtk_1_8_vs_1_32_step'] = compare(v_ref / 255.0, v_fine / 255.0)
      out[name]['shading_on' if shading else 'shading_off'] = row
  return out


def preintegration_cost(
    packed, spacing, axes, table, view, step_mm: float, repeats: int = 3
) -> dict:
  """Cached re-render, cache build and direct render with point sampling
  and with settings.preintegrate (default TF, shading on), the direct
  render also with tensor_normals (shading on and off: the quality goals'
  settings) and, for comparison, by the XLA march (native_march=False),
  timed interleaved in one process (medians of ``repeats`` after a first
  call), the cache sizes, and each pre-integrated time over the
  point-sampled."""
  runs, out = {}, {}
  for name, extra in (
      ('preintegrated_tensor', {}),
      ('preintegrated_tensor_unshaded', {'shading': False}),
      ('preintegrated_tensor_xla', {'native_march': False}),
  ):
    st = render_settings.RenderSettings(
        step_mm=step_mm,
        reference_step_mm=step_mm,
        preintegrate=True,
        tensor_normals=True,
        **extra,
    )
    runs[name] = {
        'direct': lambda st=st: raymarch.render(
            None, None, spacing, axes, table, view, st, packed=packed
        )
    }
  for name, pre in (('point', False), ('preintegrated', True)):
    st = render_settings.RenderSettings(
        step_mm=step_mm, reference_step_mm=step_mm, preintegrate=pre
    )
    build = lambda st=st: ray_cache.build_ray_cache(
        None,
        None,
        spacing,
        axes,
        view,
        tuple(table.shape[:2]),
        st,
        packed=packed,
    )
    cache = build()
    out[f'{name}_cache_mb'] = cache.nbytes / 2**20
    runs[name] = {
        'cached_render': lambda c=cache, st=st: cached_render.render_cached(
            c, table, st
        ),
        'cache_build': build,
        'direct': lambda st=st: raymarch.render(
            None, None, spacing, axes, table, view, st, packed=packed
        ),
    }
    for fn in runs[name].values():
      jax.block_until_ready(fn())
  times = {(n, k): [] for n, fns in runs.items() for k in fns}
  for _ in range(repeats):
    for (n, k), v in times.items():
      t = time.perf_counter()
      jax.block_until_ready(runs[n][k]())
      v.append(time.perf_counter() - t)
  for (n, k), v in times.items():
    out[f'{n}_{k}_s'] = statistics.median(v)
  for k in runs['point']:
    out[f'{k}_ratio'] = out[f'preintegrated_{k}_s'] / out[f'point_{k}_s']
  for n in runs:
    if n.startswith('preintegrated_'):
      out[f'{n}_direct_ratio'] = out[f'{n}_direct_s'] / out['point_direct_s']
  return out


def _first_and_again(fn):
  t = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t
  t = time.perf_counter()
  jax.block_until_ready(fn())
  return first, time.perf_counter() - t


def _compiled_programs() -> int:
  """Programs compiled so far by the renderer's jitted entry points."""
  return sum(
      f._cache_size()  # pylint: disable=protected-access
      for f in (
          raymarch._render,  # pylint: disable=protected-access
          cached_render._render_cached,  # pylint: disable=protected-access
          cache_sampling._sample_chunk,  # pylint: disable=protected-access
          cache_sampling.chords,  # pylint: disable=protected-access
      )
  )


def new_views(
    packed,
    spacing,
    axes,
    table,
    settings,
    size: int,
    azimuths=(30.0, 60.0, 90.0, 120.0, 150.0),
    bins: int = 256,
    build_kwargs=None,
    vtk=None,
    rounds: int = 7,
) -> dict:
  """Direct render, cache build and cached render of views never rendered
  before.

  The first azimuth compiles whatever a view needs; every later one is a new
  view of an already seen volume. Reported: medians over the later views of
  the first call (what a new view costs), of a second call (run time), of
  their difference (compile time per new view, >= 0 up to noise), and the
  number of programs the renderer's jitted functions compiled per later
  view (0 = every new view reuses the first's). The direct renderer gets
  the volume's block ranges once (empty_space.block_ranges), as a
  turntable would; 'cached_render' is render_cached on the new view's
  cache. On CPU, 'direct' is the native march (raymarch.native_march) and
  'direct_xla' the XLA march of the same views (settings.native_march
  False), timed in turn.

  vtk: a vtk_reference.VtkScene of the same volume, TF, step and shading (None:
  none). Then VTK renders each of these views too, and the cached
  re-render and VTK's render of the view are timed in turn, rounds times
  each (the machine's speed drifts within seconds: alternating shares the
  drift): 'same_view_vtk_s' and 'same_view_cached_render_s' are the
  medians over the later views of each one's median,
  'same_view_cached_render_over_vtk_fastest' that of the ratio of each
  one's fastest round (what each costs when nothing else runs), and
  'same_view_cached_render_over_vtk' (interleaved) /
  'same_view_direct_new_view_over_vtk' /
  'same_view_cache_build_new_view_over_vtk' (first call) the medians over
  the later views of each time over VTK's on that view.
  """
  shape = tuple(packed.shape[:3])
  ranges = empty_space.block_ranges(packed, spacing, settings.step_mm)
  rows = {'direct': [], 'cache_build': [], 'cached_render': []}
  # On CPU 'direct' is the native march; 'direct_xla' the XLA one, same run.
  xla = settings.replace(native_march=False)
  if raymarch.native_march(settings):
    rows['direct_xla'] = []
  compiles = []
  same_view = []  # (cached re-render, VTK) per view: medians.
  same_view_min = []  # Cached re-render over VTK per view: fastest rounds.
  for az in azimuths:
    before = _compiled_programs()
    view = camera_lib.head_camera(
        shape, spacing, size, size, azimuth_deg=az, elevation_deg=10.0, zoom=1.3
    )
    rows['direct'].append(
        _first_and_again(
            lambda: raymarch.render(
                None,
                None,
                spacing,
                axes,
                table,
                view,
                settings,
                packed=packed,
                ranges=ranges,
            )
        )
    )
    if 'direct_xla' in rows:
      rows['direct_xla'].append(
          _first_and_again(
              lambda: raymarch.render(
                  None,
                  None,
                  spacing,
                  axes,
                  table,
                  view,
                  xla,
                  packed=packed,
                  ranges=ranges,
              )
          )
      )
    build = lambda: ray_cache.build_ray_cache(
        None,
        None,
        spacing,
        axes,
        view,
        bins,
        settings,
        packed=packed,
        **(build_kwargs or {}),
    )
    rows['cache_build'].append(_first_and_again(build))
    cache = build()
    rerender = lambda: cached_render.render_cached(cache, table, settings)
    rows['cached_render'].append(_first_and_again(rerender))
    compiles.append(_compiled_programs() - before)
    if vtk is not None:
      vtk.look(view)
      ours, theirs = [], []
      for _ in range(rounds):
        t = time.perf_counter()
        jax.block_until_ready(rerender())
        ours.append(time.perf_counter() - t)
        theirs.append(vtk.render_s())
      same_view.append((statistics.median(ours), statistics.median(theirs)))
      same_view_min.append(min(ours) / min(theirs))
  out = {'azimuths_deg': list(azimuths)}
  for k, v in rows.items():
    later = v[1:]
    out[f'{k}_first_view_s'] = v[0][0]
    out[f'{k}_new_view_s'] = statistics.median(a for a, _ in later)
    out[f'{k}_run_s'] = statistics.median(b for _, b in later)
    out[f'{k}_compile_per_new_view_s'] = statistics.median(
        max(a - b, 0.0) for a, b in later
    )
  if same_view:
    later = same_view[1:]
    out['same_view_vtk_s'] = statistics.median(v for _, v in later)
    out['same_view_cached_render_s'] = statistics.median(c for c, _ in later)
    out['same_view_cached_render_over_vtk'] = statistics.median(
        c / v for c, v in later
    )
    out['same_view_cached_render_over_vtk_fastest'] = statistics.median(
        same_view_min[1:]
    )
    for k in ('direct', 'cache_build'):
      out[f'same_view_{k}_new_view_over_vtk'] = statistics.median(
          a / v for (a, _), (_, v) in zip(rows[k][1:], later)
      )
  out['programs_compiled_first_view'] = compiles[0]
  out['programs_compiled_per_new_view'] = compiles[1:]
  return out
