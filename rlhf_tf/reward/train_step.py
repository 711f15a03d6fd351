"""The training step of every seed at once (paper §2 eq. 3-5, §3).

The train state is stacked over seeds (leading axis = seed) and the jitted
Adam step is ``vmap``-ed over seeds, each seed with its own batch order and
dropout; ``train.py`` drives the epochs, checkpoints and summary around it.

Randomness, per seed key k (``seed_keys``):

  seed_key(k)   = fold_in(key(config.seed), k)
  init          = fold_in(seed_key, 0)
  batch order   = fold_in(fold_in(seed_key, 1), epoch)        (data.py)
  dropout       = fold_in(fold_in(seed_key, 2), global_step)

JH encoded once per step: every step encodes all S scene JHs once (exact,
and cheap when S is small: S <= ~16 JHs vs 2 x batch_size pair members), then
gathers the image embedding of each pair's scene and scores the left and right
actions against it, so both members of a pair share one dropout mask (see
model.py and batch_rewards.py).
"""

from __future__ import annotations

import functools
from typing import Dict

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.reward import batch_rewards
from rlhf_tf.reward import data as data_lib
from rlhf_tf.reward import losses as losses_lib
from rlhf_tf.reward import model as model_lib

_INIT, _SHUFFLE, _DROPOUT = 0, 1, 2
DATA_AXIS = mesh_lib.DATA


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray  # [] int32, optimizer steps taken
  params: dict
  opt_state: optax.OptState  # of (params, loss_params)
  # The loss's own learned parameters, trained with the model by the same
  # Adam: {} for L_C, L_L; {'tie_raw': []} for L_D (losses.py).
  loss_params: dict
  # Exponential moving average of ``params`` (Polyak averaging), updated
  # after every step with the decay ``train_step`` is given; {} when off.
  ema_params: dict = flax.struct.field(default_factory=dict)


def seed_keys(config) -> jax.Array:
  """[num_seeds] keys; key k = fold_in(key(seed), k)."""
  return _seed_keys(int(config.seed), int(config.num_seeds))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _seed_keys(seed: int, num_seeds: int) -> jax.Array:
  root = jax.random.key(seed)
  return jax.vmap(lambda k: jax.random.fold_in(root, k))(jnp.arange(num_seeds))


def make_optimizer(learning_rate) -> optax.GradientTransformation:
  """Adam with PyTorch's defaults (b1 0.9, b2 0.999, eps 1e-8), paper §3.

  ``learning_rate`` may be a traced scalar (no recompilation per value); the
  optimizer state does not depend on it.
  """
  return optax.adam(learning_rate)


@functools.partial(jax.jit, static_argnames=('model', 'bins', 'ema'))
def init_states(
    keys, loss_params=None, *, model, bins: int, ema: bool = False
) -> TrainState:
  """Seed-stacked initial TrainState (leading axis = seed) for keys [K].

  ``loss_params``: the loss's initial parameters (losses.initial_loss_params;
  default {}), the same for every seed. The model parameters depend on the
  keys only, so every loss starts from the same model. ``ema``: keep a
  moving average of the parameters, starting at the initial ones.
  """
  tx = make_optimizer(1e-3)
  loss_params = {} if loss_params is None else loss_params

  def one(key):
    params = model_lib.init_params(model, jax.random.fold_in(key, _INIT), bins)
    return TrainState(
        step=jnp.int32(0),
        params=params,
        opt_state=tx.init((params, loss_params)),
        loss_params=loss_params,
        ema_params=params if ema else {},
    )

  return jax.vmap(one)(keys)


def reward_table(model, params, data) -> jnp.ndarray:
  """Eval-mode rewards of every action of every scene [S, A]."""
  z = model_lib.encode(model, params, data.jh)
  return model_lib.score(model, params, z[:, None, :], data.actions)


@functools.partial(jax.jit, static_argnames=('num_pairs', 'batch_size'))
def epoch_indices(keys, epoch, *, num_pairs: int, batch_size: int):
  """Per-seed batches of one epoch: indices, weights [seeds, nb, batch]."""
  return jax.vmap(
      lambda k: data_lib.epoch_batches(
          jax.random.fold_in(k, _SHUFFLE), epoch, num_pairs, batch_size
      )
  )(keys)


@functools.partial(
    jax.jit,
    static_argnames=('model', 'loss_name', 'mesh', 'ema_decay'),
    donate_argnums=(0,),
)
def train_step(
    states: TrainState,
    keys,
    idx,
    weight,
    data,
    learning_rate,
    *,
    model,
    loss_name: str,
    mesh=None,
    ema_decay: float = 0.0,
):
  """One Adam step of every seed (vmap) on its batch idx [seeds, batch].

  ema_decay: when the states keep ``ema_params``, they become
  ema_decay * ema_params + (1 - ema_decay) * params after the update.

  mesh: optional jax.sharding.Mesh. Data-parallel over its 'data' axis: the
  state and batch are replicated, the batch's rewards are split over the
  devices (batch_rewards.py), each device's share of the model gradient is
  summed over 'data' (``lax.psum``: the 1-device gradient, up to float
  rounding; the loss's own parameters see the whole batch on every device
  already), and every device applies the same Adam update. None or 1
  device: the plain step.

  Returns:
    (states, loss [seeds]). Dropout rng = fold_in(fold_in(key, 2), step).
  """
  loss_fn = losses_lib.get_loss(loss_name)
  axis = DATA_AXIS if mesh is not None else None

  def one_seed(state, key, i, w, data, learning_rate):
    tx = make_optimizer(learning_rate)
    rng = jax.random.fold_in(jax.random.fold_in(key, _DROPOUT), state.step)

    def objective(trained):
      params, loss_params = trained
      rl, rr = batch_rewards.pair_rewards(
          model, params, data, i, True, rng, axis_name=axis
      )
      return loss_fn(rl, rr, data.target[i], w, **loss_params)

    trained = (state.params, state.loss_params)
    loss, grads = jax.value_and_grad(objective)(trained)
    if axis is not None:
      grads = (jax.lax.psum(grads[0], axis), grads[1])
    updates, opt_state = tx.update(grads, state.opt_state, trained)
    params, loss_params = optax.apply_updates(trained, updates)
    ema = state.ema_params
    if ema:  # Polyak averaging (optax.incremental_update's arithmetic).
      ema = optax.incremental_update(params, ema, 1.0 - ema_decay)
    return (
        TrainState(state.step + 1, params, opt_state, loss_params, ema),
        loss,
    )

  step = jax.vmap(one_seed, in_axes=(0, 0, 0, 0, None, None))
  args = (states, keys, idx, weight, data, learning_rate)
  if mesh is None:
    return step(*args)
  # check_vma=False: every input is replicated and the body's collectives
  # (all_gather, pmean) are explicit; see batch_rewards for the arithmetic.
  return jax.shard_map(
      step, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False
  )(*args)


def train_epoch(
    states: TrainState,
    keys,
    epoch: int,
    data,
    *,
    model,
    learning_rate: float | optax.Schedule,
    loss_name: str,
    batch_size: int,
    mesh=None,
    ema_decay: float = 0.0,
):
  """One epoch for all seeds: a Python loop of jitted, vmapped steps.

  ``ema_decay``: the decay of the states' ``ema_params`` (see train_step).

  ``learning_rate``: Adam's rate, or an optax schedule of the global step
  (epoch * steps per epoch + batch; train.learning_rate_schedule).

  Not a lax.scan: XLA:CPU runs the backward pass of convolutions inside a
  while loop about 20x slower than outside one (measured here), and the
  per-step dispatch costs well under a millisecond.

  With a mesh (see train_step) states, keys and data must be replicated on
  it (``mesh_lib.replicate``); the batch indices are passed as host arrays.

  Returns:
    (states, per-step losses [seeds, nb], real pairs per batch [seeds, nb]).
  """
  idx, weight = epoch_indices(
      keys,
      jnp.int32(epoch),
      num_pairs=int(data.target.shape[0]),
      batch_size=batch_size,
  )
  if mesh is not None:  # host values: the same in every process
    idx, weight = np.asarray(idx), np.asarray(weight)
  nb = idx.shape[1]
  if callable(learning_rate):  # (optax.constant_schedule gives a scalar)
    learning_rate = learning_rate(np.arange(epoch * nb, (epoch + 1) * nb))
  lr = np.broadcast_to(np.asarray(learning_rate, np.float32), (nb,))
  losses = []
  for b in range(nb):
    states, loss = train_step(
        states,
        keys,
        idx[:, b],
        weight[:, b],
        data,
        lr[b],
        model=model,
        loss_name=loss_name,
        mesh=mesh,
        ema_decay=float(ema_decay),
    )
    losses.append(loss)
  return states, jnp.stack(losses, axis=1), weight.sum(axis=2)


@functools.partial(jax.jit, static_argnames=('model',))
def evaluate(
    params, data, loss_params=None, *, model
) -> Dict[str, jnp.ndarray]:
  """Seed-stacked eval metrics of the pairs in ``data`` (losses.metrics);
  with the seed-stacked ``loss_params`` of L_D also its tie metrics."""

  def one(p, lp):
    r = reward_table(model, p, data)
    m = losses_lib.metrics(
        r[data.scene, data.left], r[data.scene, data.right], data.target, **lp
    )
    valid = jnp.arange(r.shape[1])[None, :] < data.num_actions[:, None]
    m['reward_mean'] = jnp.sum(r * valid) / jnp.sum(valid)
    m['reward_std'] = jnp.sqrt(
        jnp.sum((r - m['reward_mean']) ** 2 * valid) / jnp.sum(valid)
    )
    return m

  return jax.vmap(one)(params, {} if loss_params is None else loss_params)
