"""Probing a trained reward model r(JH, a) through its gradients (paper §4).

- :func:`reward_gradient`: dr/da for one action.
- :func:`reward_ascent`: projected Adam ascent of r over the vertices from
  many random starts at once (what a policy could exploit in the model).
- :func:`image_objective_gradient`: gradient of an image-space objective
  through action -> TF table -> ray-cache rendering.

Eval mode (no dropout); the JH is encoded ONCE into the image embedding z
(``model.encode``) and only ``model.score(z, actions)`` runs per step. The
sampled probes (random-action rewards, corner maps) are ``probing``'s.

Coordinates are the JH's: a vertex is (x, y) in [0, 1]^2 with x the
normalised intensity (JH column) and y the gradient magnitude (JH row).
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, Union

import jax
import jax.numpy as jnp
import optax

from rlhf_tf.render import polygon as polygon_lib
from rlhf_tf.reward import model as model_lib


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
