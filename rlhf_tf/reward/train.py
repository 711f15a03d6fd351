"""Reward-model training from pairwise preferences (paper §2 eq. 3-5, §3).

``train_and_evaluate(config, workdir, data)`` trains, for every loss in
``config.losses`` ('ce' = L_C eq. 4, 'nll' = L_L eq. 5, 'davidson' = L_D,
Bradley-Terry with ties, losses.py), ``config.num_seeds`` runs together:
the train state is stacked over seeds and the jitted train step is
``vmap``-ed over seeds (each seed has its own batch order).

Randomness (same config.seed -> same numbers; runs of both losses with the
same seed index share initial parameters and batch order, a controlled
comparison):

  seed_key(k)   = fold_in(key(config.seed), k)
  init          = fold_in(seed_key, 0)
  batch order   = fold_in(fold_in(seed_key, 1), epoch)        (data.py)
  dropout       = fold_in(fold_in(seed_key, 2), global_step)

No key is carried between epochs, so a run resumed from the checkpoint after
epoch e draws exactly the numbers an uninterrupted run draws.

JH encoded once per step: every step encodes all S scene JHs once (exact,
and cheap when S is small: S <= ~16 JHs vs 2 x batch_size pair members), then
gathers the image embedding of each pair's scene and scores the left and right
actions against it, so both members of a pair share one dropout mask (see
model.py). The held-out split is deterministic (``data.split_pairs`` with
``config.split_seed``) and shared by all runs.

Outputs in ``workdir``:
  <loss>/seed_<k>/metrics.jsonl  one JSON per epoch (train loss, train and
                                 held-out CE / NLL / accuracy / tie_loglik /
                                 margin; for L_D also its loss, tie log-lik.,
                                 the learned tie_nu; NaN written as null)
  <loss>/checkpoints/            orbax, one step per epoch (see checkpointing)
  <loss>/run_meta.json           fingerprint of config + data (resume guard)
  summary.json                   final metrics of all runs, selected runs.
Metrics go to metrics.jsonl, and, when a run ends, to TensorBoard event
files in <loss>/seed_<k>/tensorboard (tensorboard.py, via tensorboardX).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from typing import Dict, List

from absl import logging
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import PartitionSpec as P
import optax

from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.reward import batch_rewards
from rlhf_tf.reward import checkpointing
from rlhf_tf.reward import data as data_lib
from rlhf_tf.reward import losses as losses_lib
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward import tensorboard

_INIT, _SHUFFLE, _DROPOUT = 0, 1, 2
DATA_AXIS = mesh_lib.DATA
SELECTION_RULES = ('paper', 'heldout_accuracy')


def default_config() -> ml_collections.ConfigDict:
  """Paper settings (§3): 75 epochs, batch 128, Adam lr 1e-3, 3 runs/loss."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_seeds = 3
  c.losses = ('ce', 'nll')  # each looked up in losses.LOSSES (+ 'davidson')
  c.num_epochs = 75
  c.batch_size = 128
  c.learning_rate = 1e-3  # Adam default (PyTorch / optax): b1 .9, b2 .999
  c.held_out_fraction = 0.1  # the paper holds nothing out; 0 disables
  c.split_seed = 0
  c.selection = 'paper'  # 'paper': highest final train loss; or
  #                        'heldout_accuracy': best final held-out accuracy
  # metrics.jsonl is rewritten at each save. Every 5 epochs: an orbax save
  # costs about as much CPU as 1/4 epoch of the paper run, and a kill loses
  # at most 4 epochs (seconds); the last epoch is always saved.
  c.checkpoint_every_epochs = 5
  c.max_to_keep = 3
  c.async_checkpointing = False
  c.predict_chunk = 4096
  c.model = model_lib.default_config()
  return c


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray  # [] int32, optimizer steps taken
  params: dict
  opt_state: optax.OptState  # of (params, loss_params)
  # The loss's own learned parameters, trained with the model by the same
  # Adam: {} for L_C, L_L; {'tie_raw': []} for L_D (losses.py).
  loss_params: dict


def seed_keys(config) -> jax.Array:
  """[num_seeds] keys; key k = fold_in(key(seed), k)."""
  return _seed_keys(int(config.seed), int(config.num_seeds))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _seed_keys(seed: int, num_seeds: int) -> jax.Array:
  root = jax.random.key(seed)
  return jax.vmap(lambda k: jax.random.fold_in(root, k))(
      jnp.arange(num_seeds))


def make_optimizer(learning_rate) -> optax.GradientTransformation:
  """Adam with PyTorch's defaults (b1 0.9, b2 0.999, eps 1e-8), paper §3.

  ``learning_rate`` may be a traced scalar (no recompilation per value); the
  optimizer state does not depend on it.
  """
  return optax.adam(learning_rate)


@functools.partial(jax.jit, static_argnames=('model', 'bins'))
def init_states(keys, loss_params=None, *, model, bins: int) -> TrainState:
  """Seed-stacked initial TrainState (leading axis = seed) for keys [K].

  ``loss_params``: the loss's initial parameters (losses.initial_loss_params;
  default {}), the same for every seed. The model parameters depend on the
  keys only, so every loss starts from the same model.
  """
  tx = make_optimizer(1e-3)
  loss_params = {} if loss_params is None else loss_params

  def one(key):
    params = model_lib.init_params(model, jax.random.fold_in(key, _INIT), bins)
    return TrainState(step=jnp.int32(0), params=params,
                      opt_state=tx.init((params, loss_params)),
                      loss_params=loss_params)
  return jax.vmap(one)(keys)


def pair_rewards(model, params, data, idx, train: bool, rng=None):
  """(r_left, r_right) [len(idx)] for the pairs idx, encoding each JH once
  (from the reward table when it is smaller; batch_rewards.py)."""
  return batch_rewards.pair_rewards(model, params, data, idx, train, rng)


def reward_table(model, params, data) -> jnp.ndarray:
  """Eval-mode rewards of every action of every scene [S, A]."""
  z = model_lib.encode(model, params, data.jh)
  return model_lib.score(model, params, z[:, None, :], data.actions)


@functools.partial(jax.jit, static_argnames=('num_pairs', 'batch_size'))
def epoch_indices(keys, epoch, *, num_pairs: int, batch_size: int):
  """Per-seed batches of one epoch: indices, weights [seeds, nb, batch]."""
  return jax.vmap(lambda k: data_lib.epoch_batches(
      jax.random.fold_in(k, _SHUFFLE), epoch, num_pairs, batch_size))(keys)


@functools.partial(jax.jit, static_argnames=('model', 'loss_name', 'mesh'),
                   donate_argnums=(0,))
def train_step(states: TrainState, keys, idx, weight, data, learning_rate, *,
               model, loss_name: str, mesh=None):
  """One Adam step of every seed (vmap) on its batch idx [seeds, batch].

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
      rl, rr = batch_rewards.pair_rewards(model, params, data, i, True, rng,
                                          axis_name=axis)
      return loss_fn(rl, rr, data.target[i], w, **loss_params)

    trained = (state.params, state.loss_params)
    loss, grads = jax.value_and_grad(objective)(trained)
    if axis is not None:
      grads = (jax.lax.psum(grads[0], axis), grads[1])
    updates, opt_state = tx.update(grads, state.opt_state, trained)
    params, loss_params = optax.apply_updates(trained, updates)
    return TrainState(state.step + 1, params, opt_state, loss_params), loss

  step = jax.vmap(one_seed, in_axes=(0, 0, 0, 0, None, None))
  args = (states, keys, idx, weight, data, learning_rate)
  if mesh is None:
    return step(*args)
  # check_vma=False: every input is replicated and the body's collectives
  # (all_gather, pmean) are explicit; see batch_rewards for the arithmetic.
  return jax.shard_map(step, mesh=mesh, in_specs=P(), out_specs=P(),
                       check_vma=False)(*args)


def train_epoch(states: TrainState, keys, epoch: int, data, *, model,
                learning_rate: float, loss_name: str, batch_size: int,
                mesh=None):
  """One epoch for all seeds: a Python loop of jitted, vmapped steps.

  Not a lax.scan: XLA:CPU runs the backward pass of convolutions inside a
  while loop about 20x slower than outside one (measured here), and the
  per-step dispatch costs well under a millisecond.

  With a mesh (see train_step) states, keys and data must be replicated on
  it (``mesh_lib.replicate``); the batch indices are passed as host arrays.

  Returns:
    (states, per-step losses [seeds, nb], real pairs per batch [seeds, nb]).
  """
  idx, weight = epoch_indices(keys, jnp.int32(epoch),
                              num_pairs=int(data.target.shape[0]),
                              batch_size=batch_size)
  if mesh is not None:  # host values: the same in every process
    idx, weight = np.asarray(idx), np.asarray(weight)
  lr = np.float32(learning_rate)
  losses = []
  for b in range(idx.shape[1]):
    states, loss = train_step(states, keys, idx[:, b], weight[:, b], data,
                              lr, model=model, loss_name=loss_name,
                              mesh=mesh)
    losses.append(loss)
  return states, jnp.stack(losses, axis=1), weight.sum(axis=2)


@functools.partial(jax.jit, static_argnames=('model',))
def evaluate(params, data, loss_params=None, *, model
             ) -> Dict[str, jnp.ndarray]:
  """Seed-stacked eval metrics of the pairs in ``data`` (losses.metrics);
  with the seed-stacked ``loss_params`` of L_D also its tie metrics."""
  def one(p, lp):
    r = reward_table(model, p, data)
    m = losses_lib.metrics(r[data.scene, data.left],
                           r[data.scene, data.right], data.target, **lp)
    valid = jnp.arange(r.shape[1])[None, :] < data.num_actions[:, None]
    m['reward_mean'] = jnp.sum(r * valid) / jnp.sum(valid)
    m['reward_std'] = jnp.sqrt(jnp.sum((r - m['reward_mean']) ** 2 * valid)
                               / jnp.sum(valid))
    return m
  return jax.vmap(one)(params, {} if loss_params is None else loss_params)


def _fingerprint(config, data: data_lib.PreferenceData) -> str:
  c = config.to_dict()
  for k in ('num_epochs', 'losses', 'checkpoint_every_epochs', 'max_to_keep',
            'async_checkpointing', 'predict_chunk', 'selection'):
    c.pop(k, None)
  h = hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode())
  for leaf in jax.tree_util.tree_leaves(data):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(str((a.shape, a.dtype)).encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _jsonable(x):
  x = float(x)
  return x if math.isfinite(x) else None


def _write_metrics(path: str, rows: List[dict]) -> None:
  """Rewrites metrics.jsonl atomically (tmp file + rename)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    for row in rows:
      f.write(json.dumps(row) + '\n')
  os.replace(tmp, path)


def _check_finite(losses, loss_name, epoch, steps_before):
  losses = np.asarray(losses)
  bad = np.argwhere(~np.isfinite(losses))
  if bad.size:
    k, b = bad[0]
    raise FloatingPointError(
        f'non-finite {loss_name} training loss {losses[k, b]} at epoch '
        f'{epoch + 1}, step {steps_before + b + 1} (seed index {k})')


def _train_one_loss(config, workdir, loss_name, model, lr, keys, train_data,
                    held_data, mesh=None) -> List[List[dict]]:
  """Trains/resumes all seeds of one loss; returns per-seed metric rows."""
  root = os.path.join(workdir, loss_name)
  os.makedirs(root, exist_ok=True)
  meta_path = os.path.join(root, 'run_meta.json')
  fp = _fingerprint(config.copy_and_resolve_references(), train_data)
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      if json.load(f)['fingerprint'] != fp:
        raise ValueError(f'{root} holds a run with another config or data; '
                         f'use a fresh workdir')
  elif distributed.is_primary():
    with open(meta_path, 'w') as f:
      json.dump({'fingerprint': fp}, f)
  seeds = int(config.num_seeds)
  nb = data_lib.num_batches(train_data.num_pairs, int(config.batch_size))
  init = init_states(keys, losses_lib.initial_loss_params(loss_name),
                     model=model, bins=train_data.bins)
  # A copy: train_step donates its input buffers, and resuming reads init.
  states = _on_mesh(jax.tree_util.tree_map(jnp.copy, init), mesh)
  history, start = {f'seed_{k}': [] for k in range(seeds)}, 0
  with checkpointing.open_manager(
      os.path.join(root, 'checkpoints'), int(config.max_to_keep),
      bool(config.async_checkpointing)) as mngr:
    latest = mngr.latest_step()
    if latest is not None:
      params, opt_state, loss_params, history = checkpointing.restore(
          mngr, latest, init.params, init.opt_state, init.loss_params)
      start = int(latest)
      if start > int(config.num_epochs):
        raise ValueError(f'{root} already holds {start} epochs > num_epochs '
                         f'= {config.num_epochs}')
      _write_all_metrics(root, history)  # drop lines of unsaved epochs
      states = _on_mesh(TrainState(
          step=jnp.full((seeds,), start * nb, jnp.int32), params=params,
          opt_state=opt_state, loss_params=loss_params), mesh)
      logging.info('%s: resumed from epoch %d', root, start)
    for epoch in range(start, int(config.num_epochs)):
      states, step_losses, counts = train_epoch(
          states, keys, epoch, train_data, model=model, learning_rate=lr,
          loss_name=loss_name, batch_size=int(config.batch_size), mesh=mesh)
      _check_finite(step_losses, loss_name, epoch, epoch * nb)
      rows = _epoch_rows(states, step_losses, counts, train_data,
                         held_data, model, epoch, nb)
      for k, row in enumerate(rows):
        history[f'seed_{k}'].append(row)
      done = epoch + 1
      if (done % int(config.checkpoint_every_epochs) == 0
          or done == int(config.num_epochs)):
        # Metrics first, then the checkpoint: after a kill the files are
        # rewritten from the checkpoint's history, so they always agree.
        _write_all_metrics(root, history)
        checkpointing.save(mngr, done, states.params, states.opt_state,
                           history, states.loss_params)
    mngr.wait_until_finished()
  _write_all_metrics(root, history)
  if distributed.is_primary():
    for name, rows in history.items():
      tensorboard.write_events(os.path.join(root, name), rows)
  return [history[f'seed_{k}'] for k in range(seeds)]


def _write_all_metrics(root, history):
  if not distributed.is_primary():
    return
  for name, rows in history.items():
    _write_metrics(os.path.join(root, name, 'metrics.jsonl'), rows)


def _epoch_rows(states, step_losses, counts, train_data, held_data, model,
                epoch, nb) -> List[dict]:
  step_losses, counts = np.asarray(step_losses), np.asarray(counts)
  train_loss = (step_losses * counts).sum(1) / counts.sum(1)
  evals = {'train': evaluate(states.params, train_data, states.loss_params,
                             model=model)}
  if held_data is not None:
    evals['heldout'] = evaluate(states.params, held_data, states.loss_params,
                                model=model)
  rows = []
  for k in range(step_losses.shape[0]):
    # train_loss: the training objective with dropout, averaged over the
    # epoch's batches weighted by their number of pairs.
    row = {'epoch': epoch + 1, 'step': (epoch + 1) * nb,
           'train_loss': _jsonable(train_loss[k])}
    for prefix, m in evals.items():
      for name, v in m.items():
        if name.startswith(('reward_', 'tie_nu', 'tie_prob')):  # per run
          if prefix == 'train':
            row[name] = _jsonable(np.asarray(v)[k])
        else:
          row[f'{prefix}_{name}'] = _jsonable(np.asarray(v)[k])
    for name in ('train_ce', 'heldout_ce'):
      if name in row and row[name] is None:
        raise FloatingPointError(f'non-finite {name} after epoch {epoch + 1}')
    rows.append(row)
  return rows


def select_run(rows_by_seed: List[List[dict]], rule: str) -> int:
  """Index of the selected seed given each run's metric rows.

  'paper': the run with the HIGHEST final training loss (§3: the paper shows
  the runs with the highest L_C / L_L, which evaluated better).
  'heldout_accuracy': best final held-out decisive accuracy.
  Ties go to the lowest seed index.
  """
  if rule == 'paper':
    key = 'train_loss'
  elif rule == 'heldout_accuracy':
    key = 'heldout_accuracy'
  else:
    raise ValueError(f'unknown selection {rule!r}; one of {SELECTION_RULES}')
  finals = [rows[-1].get(key) for rows in rows_by_seed]
  if any(v is None for v in finals):
    raise ValueError(f'selection {rule!r} needs {key} in every run (a '
                     f'held-out split for heldout_accuracy), got {finals}')
  return int(np.argmax(finals))


def heldout_split(config: ml_collections.ConfigDict,
                  data: data_lib.PreferenceData
                  ) -> tuple[data_lib.PreferenceData,
                             data_lib.PreferenceData | None]:
  """(train, held-out or None) pairs of ``data``: the one split every run and
  the evaluation use (``config.held_out_fraction``, ``config.split_seed``)."""
  if float(config.held_out_fraction) > 0:
    return data_lib.split_pairs(data, float(config.held_out_fraction),
                                int(config.split_seed))
  return data, None


def _on_mesh(tree, mesh):
  """Host copies of ``tree`` replicated over the mesh (global arrays in a
  multi-process run); unchanged without a mesh."""
  if mesh is None:
    return tree
  return jax.tree_util.tree_map(lambda x: _replicate_leaf(x, mesh), tree)


def _replicate_leaf(x, mesh):
  """One leaf replicated from its host value; a typed PRNG key (no numpy
  form) travels as its key data and is wrapped again with its own impl."""
  if (isinstance(x, jax.Array)
      and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)):
    data = mesh_lib.replicate(np.asarray(jax.random.key_data(x)), mesh)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
  return mesh_lib.replicate(np.asarray(x), mesh)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       data: data_lib.PreferenceData, mesh=None) -> dict:
  """Trains every loss x seed (resuming from checkpoints), writes summary.json.

  mesh: optional jax.sharding.Mesh: every step data-parallel over its 'data'
  axis (train_step); process 0 alone writes metrics and summaries, every
  process takes part in the (orbax) checkpoints.

  Returns:
    the summary dict: {'selection', 'num_train_pairs', 'num_heldout_pairs',
    'runs': {loss: {'seed_k': final metrics}}, 'selected': {loss: {'seed',
    'run_dir', 'final'}}, 'train_seconds'}.
  """
  t0 = time.time()
  if config.selection not in SELECTION_RULES:
    raise ValueError(f'unknown selection {config.selection!r}')
  for name in config.losses:
    losses_lib.get_loss(name)
  data = data_lib.validate(data)
  model = model_lib.model_from_config(config.model)
  if data.num_vertices != model.n_vertices:
    raise ValueError(f'data has {data.num_vertices}-vertex actions, config '
                     f'model.n_vertices = {model.n_vertices}')
  train_np, held_np = heldout_split(config, data)
  to_jax = lambda d: jax.tree_util.tree_map(jnp.asarray, d)
  if mesh_lib.data_size(mesh) == 1:
    mesh = None
  train_data = _on_mesh(to_jax(train_np), mesh)
  held_data = (_on_mesh(to_jax(held_np), mesh) if held_np is not None
               else None)
  if train_data.num_pairs == 0:
    raise ValueError('no training pairs')
  lr = float(config.learning_rate)
  keys = _on_mesh(seed_keys(config), mesh)
  os.makedirs(workdir, exist_ok=True)
  summary = {'selection': config.selection,
             'num_train_pairs': train_data.num_pairs,
             'num_heldout_pairs': 0 if held_data is None
             else held_data.num_pairs,
             'runs': {}, 'selected': {}}
  for loss_name in config.losses:
    rows = _train_one_loss(config, workdir, loss_name, model, lr, keys,
                           train_data, held_data, mesh)
    summary['runs'][loss_name] = {f'seed_{k}': r[-1] if r else None
                                  for k, r in enumerate(rows)}
    if rows and rows[0]:
      k = select_run(rows, config.selection)
      summary['selected'][loss_name] = {
          'seed': k, 'run_dir': os.path.join(loss_name, f'seed_{k}'),
          'final': rows[k][-1]}
  summary['train_seconds'] = time.time() - t0
  if not distributed.is_primary():
    return summary
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  return summary
