"""Probing a trained reward model r(JH, a) through its inputs (paper §4).

- :func:`random_action_rewards`: rewards of N uniform random actions (Fig. 2).
- :func:`corner_maps`: the reward with one vertex moved over every JH pixel,
  the others fixed (Fig. 3 corner plots); :func:`corner_value_at` reads them.
- :func:`reward_gradient`: dr/da for one action.
- :func:`reward_ascent`: projected Adam ascent of r over the vertices from
  many random starts at once (what a policy could exploit in the model).
- :func:`image_objective_gradient`: gradient of an image-space objective
  through action -> TF table -> ray-cache rendering.

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
from typing import Callable, Dict, Optional, Union

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

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
  params, jh = _on_mesh((params, jnp.asarray(jh, jnp.float32)), mesh)
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


def _on_mesh(tree, mesh):
  """The inputs replicated over the mesh (process-local arrays, e.g. loaded
  parameters, become global ones in a multi-process run)."""
  return tree if mesh is None else mesh_lib.replicate(tree, mesh)


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
  params, jh, base_action = _on_mesh(
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


@functools.partial(jax.jit, static_argnames=('model',))
def _reward_gradient(params, jh, action, *, model):
  z = model_lib.encode(model, params, jh)
  return jax.grad(lambda a: model_lib.score(model, params, z, a))(action)


def reward_gradient(model, params, jh, action) -> jnp.ndarray:
  """dr(JH, a)/da [n, 2] for one action a [n, 2] (eval mode, as given).

  The action is scored as given (not canonicalised); r is piecewise linear
  in a (ReLU network), so this is the gradient of the active linear piece.
  """
  return _reward_gradient(
      params,
      jnp.asarray(jh, jnp.float32),
      jnp.asarray(action, jnp.float32),
      model=model,
  )


@functools.partial(
    jax.jit,
    static_argnames=('model', 'num_starts', 'steps', 'lr', 'n_vertices'),
)
def _reward_ascent(
    params, jh, key, *, model, num_starts, steps, lr, n_vertices
):
  z = model_lib.encode(model, params, jh)

  def reward(v):  # v [n, 2] free vertex positions -> scalar
    return model_lib.score(model, params, z, polygon_lib.canonicalize(v))

  opt = optax.adam(lr)
  value_and_grad = jax.vmap(jax.value_and_grad(reward))
  v0 = polygon_lib.random_actions(key, num_starts, n_vertices)
  state0 = jax.vmap(opt.init)(v0)

  def step(carry, _):
    v, state = carry
    _, g = value_and_grad(v)
    # optax minimises: descend on -r.
    updates, state = jax.vmap(opt.update)(
        jax.tree_util.tree_map(jnp.negative, g), state
    )
    v = jnp.clip(optax.apply_updates(v, updates), 0.0, 1.0)
    return (v, state), jax.vmap(reward)(v)

  (v, _), history = jax.lax.scan(step, (v0, state0), None, length=steps)
  final = polygon_lib.canonicalize(v)
  return {
      'actions': final,
      'rewards': jax.vmap(reward)(v),
      'history': history,
      'initial_actions': v0,
      'initial_rewards': jax.vmap(reward)(v0),
      'area': polygon_lib.polygon_area(final),
      'best_index': jnp.argmax(history[-1]),
  }


def reward_ascent(
    model,
    params,
    jh,
    key,
    num_starts: int = 32,
    steps: int = 200,
    lr: float = 0.01,
    n_vertices: int = 4,
) -> Dict[str, jnp.ndarray]:
  """Projected Adam ascent of r(JH, a) over the vertices, S starts at once.

  Starts: S uniform random canonical actions (``random_actions(key, ...)``).
  Each start keeps free vertex positions v [n, 2] and its own Adam state; the
  objective is f(v) = r(JH, canonicalize(v)). One step is

    v <- clip(v + AdamUpdate(grad f(v)), 0, 1)   (projection onto [0, 1]^2).

  canonicalize is a permutation of the vertices (counter-clockwise around
  their mean), so the polygon that is scored is always the simple,
  star-shaped canonical one, and r stays on valid actions; gradients flow
  back through the permutation to the vertex that moved. The free iterate v
  is never reordered itself, so each Adam moment belongs to one vertex for
  the whole run. All S starts run vmapped and the whole loop is one jitted
  ``lax.scan``.

  Caveat: canonicalize makes the vertex ORDER valid but cannot stop the
  projection from collapsing a polygon: when r keeps increasing towards a
  border of the JH, several vertices are clipped onto the same border line
  and the polygon degenerates (zero area, collinear vertices). 'area' reports
  this; filter on it (e.g. area >= 1e-4, ``validate_polygon``'s default) or
  read it as the model rewarding actions outside its data.

  Args:
    model, params: the reward model; jh: [B, B]; key: PRNG key of starts.
    num_starts: S; steps: T; lr: Adam learning rate (JH units / step);
    n_vertices: n (= model.n_vertices).

  Returns:
    dict: 'actions' [S, n, 2] final canonical actions in [0, 1]^2;
    'rewards' [S] their rewards; 'history' [T, S] the reward after each
    step; 'initial_actions' [S, n, 2], 'initial_rewards' [S]; 'area' [S]
    signed area of the final actions (>= 0: counter-clockwise, ~0:
    collapsed); 'best_index' the start with the highest final reward.
  """
  return _reward_ascent(
      params,
      jnp.asarray(jh, jnp.float32),
      key,
      model=model,
      num_starts=int(num_starts),
      steps=int(steps),
      lr=float(lr),
      n_vertices=int(n_vertices),
  )


# Rec. 709 luma weights of linear RGB.
_LUMA = (0.2126, 0.7152, 0.0722)

IMAGE_OBJECTIVES: Dict[str, Callable] = {
    # mean over pixels of the accumulated opacity alpha(pixel).
    'mean_alpha': lambda rgba: jnp.mean(rgba[..., 3]),
    # mean over pixels of the luminance 0.2126 R + 0.7152 G + 0.0722 B.
    'mean_luminance': lambda rgba: jnp.mean(
        rgba[..., :3] @ jnp.asarray(_LUMA, rgba.dtype)
    ),
}


def image_objective_gradient(
    scene, vertices, objective: Union[str, Callable] = 'mean_alpha'
):
  """Value and gradient of an image objective w.r.t. the polygon vertices.

  J(a) = objective(scene.render(a)) through the whole differentiable chain
  a [n, 2] -> soft TF table alpha = alpha_max sigma(d(x, y; a) / tau) ->
  ray-cache rendering [H, W, 4]; dJ/da by reverse-mode autodiff. The
  vertices are used as given (not canonicalised).

  Args:
    scene: a ``preferences.scenes.Scene`` (its tau sets the TF smoothness).
    vertices: [n, 2] polygon.
    objective: 'mean_alpha', 'mean_luminance' (see IMAGE_OBJECTIVES) or a
      callable rgba [H, W, 4] -> scalar.

  Returns:
    (value scalar, grad [n, 2]).
  """
  if isinstance(objective, str):
    if objective not in IMAGE_OBJECTIVES:
      raise ValueError(
          f'unknown objective {objective!r}; choose from '
          f'{sorted(IMAGE_OBJECTIVES)} or pass a callable'
      )
    objective = IMAGE_OBJECTIVES[objective]
  fn = lambda v: objective(scene.render(v))  # noqa: E731
  return jax.value_and_grad(fn)(jnp.asarray(vertices, jnp.float32))


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
