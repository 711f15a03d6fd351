"""The rewards one training step evaluates, on one device or split over many.

A batch of B pairs needs r(JH_s, a) for its 2B members. Every reward of a
scene is scored against the same image embedding z_s (the JH is encoded once
per step, model.py), so r depends only on (scene, action): when the data
has no more (scene, action) combinations than pair members, S A <= 2 B
(the paper: 1 scene x 100 actions vs 256 members), the step scores the whole
reward TABLE [S, A] once and gathers both members of every pair from it.
This is the same function of the parameters (the same dropout mask, the same
gradient: the gather's transpose sums a pair's cotangents onto its table
entry) at 100 instead of 256 MLP evaluations. Otherwise it scores the 2B
members directly. Either way the list of (scene, action) QUERIES is static
in shape (a jit-friendly choice at trace time).

Across devices (inside ``shard_map`` over a mesh axis, see train_step.py): the
queries are split over the axis, each device scores its slice, and an
``all_gather`` of the (gradient-stopped) values gives every device all
rewards, its own slice kept differentiable. Each device then computes the
whole batch loss (the same value everywhere) and its gradient is exactly
the part of the 1-device gradient that flows through its own queries (and
the JH encoder they use): ``lax.psum`` over the axis of these parts is the
1-device gradient of the model, term for term (train_step.py).
"""

from __future__ import annotations

from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from rlhf_tf.reward import model as model_lib


def use_table(num_scenes: int, num_actions: int, batch: int) -> bool:
  """Score the whole [S, A] table (True) or the 2B pair members."""
  return num_scenes * num_actions <= 2 * batch


def queries(data, idx) -> Tuple[jnp.ndarray, ...]:
  """(q_scene [Q], q_action [Q], left [B], right [B]) for pairs idx [B]:
  reward q of the list scores (q_scene[q], q_action[q]); pair b's members are
  rewards left[b] and right[b] of it."""
  s, a = data.actions.shape[:2]
  scene = data.scene[idx]
  if use_table(s, a, idx.shape[0]):
    q_scene = jnp.repeat(jnp.arange(s), a)
    q_action = jnp.tile(jnp.arange(a), s)
    return (
        q_scene,
        q_action,
        scene * a + data.left[idx],
        scene * a + data.right[idx],
    )
  b = idx.shape[0]
  return (
      jnp.concatenate([scene, scene]),
      jnp.concatenate([data.left[idx], data.right[idx]]),
      jnp.arange(b),
      b + jnp.arange(b),
  )


def _score(model, params, z, data, q_scene, q_action):
  return model_lib.score(
      model, params, z[q_scene], data.actions[q_scene, q_action]
  )


def pair_rewards(
    model,
    params,
    data,
    idx,
    train: bool,
    rng=None,
    axis_name: Optional[str] = None,
):
  """(r_left, r_right) [B] for the pairs idx [B], each JH encoded once.

  axis_name: inside ``shard_map``, the mesh axis whose devices split the
  queries (see the module docstring); every device returns all B rewards.
  """
  z = model_lib.encode(model, params, data.jh, train, rng)  # [S, H]
  q_scene, q_action, left, right = queries(data, idx)
  if axis_name is None:
    r = _score(model, params, z, data, q_scene, q_action)
  else:
    num = q_scene.shape[0]
    devices = jax.lax.axis_size(axis_name)
    per = -(-num // devices)
    pad = per * devices - num
    q_scene, q_action = (jnp.pad(q, (0, pad)) for q in (q_scene, q_action))
    start = jax.lax.axis_index(axis_name) * per
    local = [
        jax.lax.dynamic_slice_in_dim(q, start, per) for q in (q_scene, q_action)
    ]
    r_local = _score(model, params, z, data, *local)
    r_all = jax.lax.all_gather(
        jax.lax.stop_gradient(r_local), axis_name, tiled=True
    )
    r = jax.lax.dynamic_update_slice_in_dim(r_all, r_local, start, 0)[:num]
  return r[left], r[right]
