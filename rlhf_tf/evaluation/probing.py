"""Probing a trained reward model r(JH, a) through its inputs (paper §4).

- :func:`random_action_rewards`: rewards of N uniform random actions (Fig. 2).
- :func:`corner_maps`: the reward with one vertex moved over every JH pixel,
  the others fixed (Fig. 3 corner plots); :func:`corner_value_at`,
  :func:`corner_map_optima` and :func:`corner_map_picks` read them.

The probes by gradient (dr/da, reward ascent, image-space objectives) are
``probing_gradients``.

Everything is eval mode (no dropout). The JH is encoded ONCE into the image
embedding z (``model.encode``) and only ``model.score(z, actions)`` runs per
action; actions are scored by one jitted program, optionally in chunks of a
fixed size (``lax.map`` over chunks bounds the activation memory to
chunk x max(action_features) floats).

SHARDING: with ``mesh`` (a ``jax.sharding.Mesh``, see rlhf_tf.devices.mesh)
the actions of :func:`random_action_rewards` and :func:`corner_maps` are
split over the mesh's 'data' axis with ``jax.shard_map`` (each device scores
its slice, chunked; the JH is encoded once and replicated); the result is
replicated on every device and equals the 1-device one up to float32
rounding of the batched matmuls (|diff| <= 1e-5 relative, tested). A mesh of
one device runs the unsharded program.

Coordinates are the JH's: a vertex is (x, y) in [0, 1]^2 with x the
normalised intensity (JH column) and y the gradient magnitude (JH row).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.render import polygon as polygon_lib
from rlhf_tf.reward import model as model_lib


def _score_chunked(model, params, z, actions, chunk: Optional[int]):
  """Rewards [N] of actions [N, n, 2] under z [H] (traced; shapes static).

  chunk None or >= N: one batched call. Otherwise the actions are zero-padded
  to a multiple of ``chunk``, scored chunk by chunk with ``lax.map`` and the
  padding dropped.
  """
  num = actions.shape[0]
  if chunk is None or chunk >= num:
    return model_lib.score(model, params, z, actions)
  chunks = -(-num // chunk)
  pad = chunks * chunk - num
  padded = jnp.pad(actions, ((0, pad), (0, 0), (0, 0)))
  out = jax.lax.map(
      lambda a: model_lib.score(model, params, z, a),
      padded.reshape((chunks, chunk) + actions.shape[1:]),
  )
  return out.reshape(-1)[:num]


def _score_on_mesh(model, params, z, actions, chunk: Optional[int], mesh):
  """``_score_chunked`` with the actions split over mesh axis 'data' (traced).

  Actions are padded to a multiple of the 'data' size (last row repeated),
  each device scores its slice in chunks of ``chunk``, and the rewards [N]
  come back replicated on every device (N floats: cheap to all-gather, and
  readable by every process).
  """
  if mesh_lib.data_size(mesh) == 1:
    return _score_chunked(model, params, z, actions, chunk)
  num = actions.shape[0]
  padded = mesh_lib.pad_leading(actions, mesh_lib.data_size(mesh))
  per_device = jax.shard_map(
      lambda p, z, a: _score_chunked(model, p, z, a, chunk),
      mesh=mesh,
      in_specs=(P(), P(), P(mesh_lib.DATA)),
      out_specs=P(mesh_lib.DATA),
  )
  rewards = per_device(params, z, padded)[:num]
  return jax.lax.with_sharding_constraint(rewards, NamedSharding(mesh, P()))


@functools.partial(
    jax.jit, static_argnames=('model', 'num', 'n_vertices', 'chunk', 'mesh')
)
def _random_rewards(params, jh, key, *, model, num, n_vertices, chunk, mesh):
  actions = polygon_lib.random_actions(key, num, n_vertices)
  z = model_lib.encode(model, params, jh)
  return actions, _score_on_mesh(model, params, z, actions, chunk, mesh)


def random_action_rewards(
    model,
    params,
    jh,
    key,
    num: int = 20000,
    n_vertices: int = 4,
    chunk: Optional[int] = None,
    mesh=None,
):
  """Rewards of ``num`` uniform random canonical actions (paper Fig. 2).

  Args:
    model: RewardModel (static); params: its parameters.
    jh: [B, B] joint histogram (encoded once).
    key: PRNG key of the actions (``polygon.random_actions``).
    num: N; n_vertices: n (must equal model.n_vertices).
    chunk: score in chunks of this many actions (None = all at once; per
      device with a mesh).
    mesh: optional jax.sharding.Mesh; the actions are split over its 'data'
      axis (the same actions and, up to rounding, the same rewards).

  Returns:
    (actions [N, n, 2], rewards [N]) as jax arrays.
  """
  mesh = _mesh_or_none(mesh)
  params, jh = mesh_lib.replicate((params, jnp.asarray(jh, jnp.float32)), mesh)
  return _random_rewards(
      params,
      jh,
      key,
      model=model,
      num=int(num),
      n_vertices=int(n_vertices),
      chunk=None if chunk is None else int(chunk),
      mesh=mesh,
  )


def _mesh_or_none(mesh):
  """None for no mesh or a 1-device one (both run the unsharded program)."""
  return mesh if mesh_lib.data_size(mesh) > 1 else None


def pixel_centres(grid: int) -> jnp.ndarray:
  """[G] pixel centres (i + 0.5) / G of a G-pixel axis of [0, 1]."""
  return (jnp.arange(grid, dtype=jnp.float32) + 0.5) / grid


@functools.partial(jax.jit, static_argnames=('model', 'grid', 'chunk', 'mesh'))
def _corner_maps(params, jh, base_action, *, model, grid, chunk, mesh):
  n = base_action.shape[0]
  c = pixel_centres(grid)
  # xy[i, j] = (x = c_j, y = c_i): row = y, column = x, as the JH image.
  xy = jnp.stack(jnp.meshgrid(c, c, indexing='xy'), axis=-1)  # [G, G, 2]
  onehot = jnp.eye(n, dtype=bool)[:, None, None, :, None]  # [n,1,1,n,1]
  actions = jnp.where(
      onehot, xy[None, :, :, None, :], base_action[None, None, None]
  )  # [n, G, G, n, 2]
  z = model_lib.encode(model, params, jh)
  rewards = _score_on_mesh(
      model, params, z, actions.reshape(-1, n, 2), chunk, mesh
  )
  return rewards.reshape(n, grid, grid)


def corner_maps(
    model,
    params,
    jh,
    base_action,
    grid: Optional[int] = None,
    chunk: Optional[int] = 65536,
    mesh=None,
) -> jnp.ndarray:
  """Reward maps with one vertex moved over the JH (paper Fig. 3).

  maps[k, i, j] = r(JH, a^{k,i,j}) where a^{k,i,j} is ``base_action`` with
  vertex k replaced by the pixel centre (x, y) = ((j + 0.5) / G,
  (i + 0.5) / G): row i = y, column j = x, the convention of the JH image
  [row = y bin, column = x bin], so a map can be drawn over the JH directly.
  The polygon is NOT canonicalised: vertex k moves, the vertex order is kept
  (the map of vertex k is then a map of that vertex, as in the paper; far
  from the base position the ordered polygon may self-intersect, which the
  reward model sees as an ordinary input). All n G^2 actions are scored by
  one jitted program with the JH encoded once.

  Args:
    model, params: the reward model; jh: [B, B].
    base_action: [n, 2] the fixed polygon (e.g. an expert action).
    grid: G, default B (one value per JH pixel).
    chunk: actions per scoring chunk (None = all at once; per device with a
      mesh).
    mesh: optional jax.sharding.Mesh: the n G^2 actions are split over its
      'data' axis.

  Returns:
    [n, G, G] rewards.
  """
  jh = jnp.asarray(jh, jnp.float32)
  grid = int(jh.shape[-1] if grid is None else grid)
  mesh = _mesh_or_none(mesh)
  params, jh, base_action = mesh_lib.replicate(
      (params, jh, jnp.asarray(base_action, jnp.float32)), mesh
  )
  return _corner_maps(
      params,
      jh,
      base_action,
      model=model,
      grid=grid,
      chunk=None if chunk is None else int(chunk),
      mesh=mesh,
  )


def corner_value_at(maps, k: int, xy) -> jnp.ndarray:
  """maps[k] at the pixel containing xy = (x, y) (nearest pixel centre).

  j = clip(floor(x G), 0, G - 1), i = clip(floor(y G), 0, G - 1); returns
  maps[k, i, j] (scalar; xy may also be [..., 2] for several points).
  """
  maps = jnp.asarray(maps)
  grid_y, grid_x = maps.shape[-2:]
  xy = jnp.asarray(xy, jnp.float32)
  j = jnp.clip(jnp.floor(xy[..., 0] * grid_x).astype(jnp.int32), 0, grid_x - 1)
  i = jnp.clip(jnp.floor(xy[..., 1] * grid_y).astype(jnp.int32), 0, grid_y - 1)
  return maps[k, i, j]


def corner_map_optima(maps) -> np.ndarray:
  """[n, 2] (x, y) pixel centre of the highest reward of each vertex's map.

  Args:
    maps: [n, G, G] corner maps (``corner_maps``; row = y, column = x).
  """
  maps = np.asarray(maps)
  grid = maps.shape[-1]
  best = []
  for k in range(maps.shape[0]):
    row, col = np.unravel_index(np.argmax(maps[k]), maps[k].shape)
    best.append(((col + 0.5) / grid, (row + 0.5) / grid))
  return np.asarray(best)


def distance_to_optima(action, optima) -> float:
  """Mean over the optima [m, 2] of the distance (JH units) to the nearest
  vertex of ``action`` [n, 2]: how close a found TF sits to the corner maps'
  best positions (each optimum matched to its nearest vertex)."""
  action, optima = np.asarray(action), np.asarray(optima)
  dist = np.linalg.norm(action[None, :, :] - optima[:, None, :], axis=-1)
  return float(dist.min(axis=1).mean())


def corner_map_picks(maps, base_action, k: int):
  """Vertex k of ``base_action`` moved to the lowest, median and highest
  pixel of its corner map: [(label, (x, y), reward, action [n, 2])] for the
  renders of Fig. 3."""
  maps = np.asarray(maps)
  grid = maps.shape[-1]
  flat = maps[k].reshape(-1)
  order = np.argsort(flat)
  out = []
  for label, idx in (
      ('low', order[0]),
      ('medium', order[len(order) // 2]),
      ('high', order[-1]),
  ):
    row, col = divmod(int(idx), grid)
    xy = ((col + 0.5) / grid, (row + 0.5) / grid)
    action = np.array(base_action, np.float32)
    action[k] = xy
    out.append((label, xy, float(flat[idx]), action))
  return out
