"""Rendering many actions of one cached view, split over devices.

The images of a scene's action set (the store's PNGs, the simulated
inspector's judgements, evaluation grids, the UI's pre-rendering) are
independent: :func:`render_actions` splits the actions over the mesh's
'data' axis with ``jax.shard_map``. Each device holds the whole ray cache
(replicated) and renders its share of every chunk one action after another
(``lax.map``: the memory of one rendering per device at a time). Only the
public renderer is used: ``transfer_function.tf_table`` then
``cached_render.render_cached`` / ``render_cached_labels``.

Without a mesh (or with a 1-device one) each action is rendered by the very
calls ``Scene.render`` / ``Scene.render_tissues`` make, as before. Sharded
images equal those within float32 rounding (max abs difference <= 1e-6 on
[0, 1] RGBA, tested).
"""

from __future__ import annotations

import functools
from typing import Iterator, Tuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np

from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.render import (
    cached_render,
    ray_cache,
    render_settings,
    transfer_function,
)


def _render_one(cache, vertices, *, bins, tau, alpha_max, settings, num_labels):
  table = transfer_function.tf_table(
      vertices, bins, tau=tau, alpha_max=alpha_max
  )
  if num_labels:
    return cached_render.render_cached_labels(
        cache, table, num_labels, settings
    )
  return (cached_render.render_cached(cache, table, settings),)


@functools.partial(
    jax.jit,
    static_argnames=(
        'bins',
        'tau',
        'alpha_max',
        'settings',
        'num_labels',
        'mesh',
    ),
)
def _render_sharded(
    cache, vertices, *, bins, tau, alpha_max, settings, num_labels, mesh
):
  one = functools.partial(
      _render_one,
      bins=bins,
      tau=tau,
      alpha_max=alpha_max,
      settings=settings,
      num_labels=num_labels,
  )
  # check_vma=False: the renderer's loops start from constant carries that
  # shard_map's type check would want cast to 'varying'; nothing here
  # communicates across devices, so the check has nothing to protect.
  per_device = jax.shard_map(
      lambda c, v: jax.lax.map(lambda a: one(c, a), v),
      mesh=mesh,
      in_specs=(P(), P(mesh_lib.DATA)),
      out_specs=P(mesh_lib.DATA),
      check_vma=False,
  )
  return per_device(cache, vertices)


def iter_render_actions(
    cache: ray_cache.RayCache,
    vertices,
    *,
    tau: float,
    alpha_max: float,
    settings: render_settings.RenderSettings,
    num_labels: int = 0,
    mesh=None,
    per_device: int = 4,
) -> Iterator[Tuple[int, Tuple[np.ndarray, ...]]]:
  """Renders actions [A, n, 2] chunk by chunk; yields (start, outputs).

  outputs are host arrays for actions start .. start + len - 1:
  (rgba [k, H, W, 4],) or, with num_labels = G > 0, (rgba, tissue weights
  [k, H, W, G], hits [k, H, W, G]) as ``render_cached_labels``.

  Args:
    cache: the view's ray cache (built with labels when num_labels > 0).
    vertices: [A, n, 2] actions.
    tau, alpha_max: the TF's edge softness and opacity (as the Scene's).
    settings: the render settings of the cache.
    num_labels: G for the tissue weights, 0 for images only.
    mesh: optional jax.sharding.Mesh; chunks of per_device x (its 'data'
      size) actions are split over 'data' (the last one padded by
      repeating an action). None / 1 device: one action per call.
    per_device: actions each device renders per chunk (one compile for all
      chunks; memory: that many images per device).
  """
  vertices = np.asarray(vertices, np.float32)
  num = vertices.shape[0]
  bins = int(cache.bins[0])
  if cache.bins[0] != cache.bins[1]:
    raise ValueError(f'square TF tables only, the cache has {cache.bins}')
  kw = dict(
      bins=bins,
      tau=float(tau),
      alpha_max=float(alpha_max),
      settings=settings,
      num_labels=int(num_labels),
  )
  if mesh_lib.data_size(mesh) == 1:
    for i in range(num):
      out = _render_one(cache, jnp.asarray(vertices[i]), **kw)
      yield i, tuple(np.asarray(x)[None] for x in out)
    return
  chunk = int(per_device) * mesh_lib.data_size(mesh)
  cache = mesh_lib.replicate(cache, mesh)
  for start in range(0, num, chunk):
    part = vertices[start : start + chunk]
    out = _render_sharded(
        cache, mesh_lib.pad_leading(part, chunk), mesh=mesh, **kw
    )
    yield start, tuple(mesh_lib.to_host(x)[: len(part)] for x in out)


def render_actions(
    cache: ray_cache.RayCache,
    vertices,
    *,
    tau: float,
    alpha_max: float,
    settings: render_settings.RenderSettings,
    num_labels: int = 0,
    mesh=None,
    per_device: int = 4,
) -> Tuple[np.ndarray, ...]:
  """All outputs of :func:`iter_render_actions` concatenated (host arrays;
  A x H x W x 4 floats: mind the memory for large A)."""
  parts = [
      out
      for _, out in iter_render_actions(
          cache,
          vertices,
          tau=tau,
          alpha_max=alpha_max,
          settings=settings,
          num_labels=num_labels,
          mesh=mesh,
          per_device=per_device,
      )
  ]
  if not parts:
    raise ValueError('no actions to render')
  return tuple(np.concatenate(xs) for xs in zip(*parts))
