"""Reward-model training from pairwise preferences (paper §2 eq. 3-5, §3).

``train_and_evaluate(config, workdir, data)`` trains, for every loss in
``config.losses`` ('ce' = L_C eq. 4, 'nll' = L_L eq. 5, 'davidson' = L_D,
Bradley-Terry with ties, losses.py), ``config.num_seeds`` runs together:
the train state is stacked over seeds and the jitted train step is
``vmap``-ed over seeds (each seed has its own batch order).

Randomness (same config.seed -> same numbers; runs of both losses with the
same seed index share initial parameters and batch order, a controlled
comparison): the keys per purpose are listed in train_step.py, where the
step over seeds, the epoch and the evaluation live. No key is carried
between epochs, so a run resumed from the checkpoint after epoch e draws
exactly the numbers an uninterrupted run draws. The held-out split is
deterministic (``data.split_pairs`` with ``config.split_seed``) and shared
by all runs.

This module: the epoch loop with checkpoint-resume (``_train_one_loss``),
the metric files, the choice of the reported run (``select_run``) and the
summary (``train_and_evaluate``).

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

import hashlib
import json
import math
import os
import time
from typing import List

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.reward import checkpointing, tensorboard
from rlhf_tf.reward import data as data_lib
from rlhf_tf.reward import losses as losses_lib
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward.train_step import (
    evaluate,
    init_states,
    seed_keys,
    train_epoch,
    TrainState,
)

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
  # 'constant' (the paper's Adam) or 'cosine': the rate falls from
  # learning_rate to 0 along half a cosine over num_epochs (Loshchilov &
  # Hutter 2017, SGDR without restarts; optax.cosine_decay_schedule).
  c.lr_schedule = 'constant'
  # Polyak averaging: 0 = off; else the reward is an exponential moving
  # average of the parameters, ema <- d ema + (1 - d) params after every
  # step (from the initial parameters; optax.incremental_update), which
  # smooths the last steps' noise at no extra training cost.
  c.param_ema = 0.0
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


def _fingerprint(config, data: data_lib.PreferenceData) -> str:
  c = config.to_dict()
  for k in (
      'num_epochs',
      'losses',
      'checkpoint_every_epochs',
      'max_to_keep',
      'async_checkpointing',
      'predict_chunk',
      'selection',
  ):
    c.pop(k, None)
  if c.get('lr_schedule', 'constant') == 'constant':
    # Runs saved before the schedule existed keep their fingerprint.
    c.pop('lr_schedule', None)
  if not c.get('param_ema', 0.0):  # Likewise runs before param_ema.
    c.pop('param_ema', None)
  if c.get('lr_schedule', 'constant') != 'constant':
    # A decaying rate's every step depends on the run's length.
    c['num_epochs'] = config.num_epochs
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
        f'{epoch + 1}, step {steps_before + b + 1} (seed index {k})'
    )


def _train_one_loss(
    config,
    workdir,
    loss_name,
    model,
    lr,
    keys,
    train_data,
    held_data,
    mesh=None,
) -> List[List[dict]]:
  """Trains/resumes all seeds of one loss; returns per-seed metric rows."""
  root = os.path.join(workdir, loss_name)
  meta_path = os.path.join(root, 'run_meta.json')
  fp = _fingerprint(config.copy_and_resolve_references(), train_data)
  # Process 0 checks / writes the fingerprint first; the others then check
  # the file it wrote (every process refuses a foreign run alike).
  with distributed.primary_first(f'run_meta {loss_name}'):
    if os.path.exists(meta_path):
      with open(meta_path) as f:
        if json.load(f)['fingerprint'] != fp:
          raise ValueError(
              f'{root} holds a run with another config or '
              f'data; use a fresh workdir'
          )
    elif distributed.is_primary():
      os.makedirs(root, exist_ok=True)
      with open(meta_path, 'w') as f:
        json.dump({'fingerprint': fp}, f)
  seeds = int(config.num_seeds)
  nb = data_lib.num_batches(train_data.num_pairs, int(config.batch_size))
  ema_decay = float(config.get('param_ema', 0.0))
  if not 0.0 <= ema_decay < 1.0:
    raise ValueError(f'param_ema must be in [0, 1), got {ema_decay}')
  init = init_states(
      keys,
      losses_lib.initial_loss_params(loss_name),
      model=model,
      bins=train_data.bins,
      ema=ema_decay > 0,
  )
  # A copy: train_step donates its input buffers, and resuming reads init.
  states = mesh_lib.replicate(jax.tree_util.tree_map(jnp.copy, init), mesh)
  history, start = {f'seed_{k}': [] for k in range(seeds)}, 0
  with checkpointing.open_manager(
      os.path.join(root, 'checkpoints'),
      int(config.max_to_keep),
      bool(config.async_checkpointing),
  ) as mngr:
    latest = mngr.latest_step()
    if latest is not None:
      params, opt_state, loss_params, history = checkpointing.restore(
          mngr, latest, init.params, init.opt_state, init.loss_params
      )
      start = int(latest)
      if start > int(config.num_epochs):
        raise ValueError(
            f'{root} already holds {start} epochs > num_epochs '
            f'= {config.num_epochs}'
        )
      _write_all_metrics(root, history)  # drop lines of unsaved epochs
      ema_params = (
          checkpointing.restore_ema_params(mngr, latest, init.params)
          if ema_decay > 0
          else {}
      )
      states = mesh_lib.replicate(
          TrainState(
              step=jnp.full((seeds,), start * nb, jnp.int32),
              params=params,
              opt_state=opt_state,
              loss_params=loss_params,
              ema_params=ema_params,
          ),
          mesh,
      )
      logging.info('%s: resumed from epoch %d', root, start)
    for epoch in range(start, int(config.num_epochs)):
      states, step_losses, counts = train_epoch(
          states,
          keys,
          epoch,
          train_data,
          model=model,
          learning_rate=lr,
          loss_name=loss_name,
          batch_size=int(config.batch_size),
          mesh=mesh,
          ema_decay=ema_decay,
      )
      _check_finite(step_losses, loss_name, epoch, epoch * nb)
      rows = _epoch_rows(
          states, step_losses, counts, train_data, held_data, model, epoch, nb
      )
      for k, row in enumerate(rows):
        history[f'seed_{k}'].append(row)
      done = epoch + 1
      if done % int(config.checkpoint_every_epochs) == 0 or done == int(
          config.num_epochs
      ):
        # Metrics first, then the checkpoint: after a kill the files are
        # rewritten from the checkpoint's history, so they always agree.
        _write_all_metrics(root, history)
        checkpointing.save(
            mngr,
            done,
            states.params,
            states.opt_state,
            history,
            states.loss_params,
            states.ema_params,
        )
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


def _epoch_rows(
    states, step_losses, counts, train_data, held_data, model, epoch, nb
) -> List[dict]:
  step_losses, counts = np.asarray(step_losses), np.asarray(counts)
  train_loss = (step_losses * counts).sum(1) / counts.sum(1)
  evals = {
      'train': evaluate(
          states.params, train_data, states.loss_params, model=model
      )
  }
  if held_data is not None:
    evals['heldout'] = evaluate(
        states.params, held_data, states.loss_params, model=model
    )
  rows = []
  for k in range(step_losses.shape[0]):
    # train_loss: the training objective with dropout, averaged over the
    # epoch's batches weighted by their number of pairs.
    row = {
        'epoch': epoch + 1,
        'step': (epoch + 1) * nb,
        'train_loss': _jsonable(train_loss[k]),
    }
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
    raise ValueError(
        f'selection {rule!r} needs {key} in every run (a '
        f'held-out split for heldout_accuracy), got {finals}'
    )
  return int(np.argmax(finals))


LR_SCHEDULES = ('constant', 'cosine')


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
  """Adam's rate at each optimizer step (config.lr_schedule)."""
  lr = float(config.learning_rate)
  if config.lr_schedule == 'constant':
    return optax.constant_schedule(lr)
  if config.lr_schedule == 'cosine':
    return optax.cosine_decay_schedule(
        lr, int(config.num_epochs) * int(steps_per_epoch)
    )
  raise ValueError(
      f'unknown config.lr_schedule {config.lr_schedule!r}; one of '
      f'{LR_SCHEDULES}'
  )


def heldout_split(
    config: ml_collections.ConfigDict, data: data_lib.PreferenceData
) -> tuple[data_lib.PreferenceData, data_lib.PreferenceData | None]:
  """(train, held-out or None) pairs of ``data``: the one split every run and
  the evaluation use (``config.held_out_fraction``, ``config.split_seed``)."""
  if float(config.held_out_fraction) > 0:
    return data_lib.split_pairs(
        data, float(config.held_out_fraction), int(config.split_seed)
    )
  return data, None


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    data: data_lib.PreferenceData,
    mesh=None,
) -> dict:
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
    raise ValueError(
        f'data has {data.num_vertices}-vertex actions, config '
        f'model.n_vertices = {model.n_vertices}'
    )
  train_np, held_np = heldout_split(config, data)
  to_jax = lambda d: jax.tree_util.tree_map(jnp.asarray, d)
  if mesh_lib.data_size(mesh) == 1:
    mesh = None
  train_data = mesh_lib.replicate(to_jax(train_np), mesh)
  held_data = (
      mesh_lib.replicate(to_jax(held_np), mesh) if held_np is not None else None
  )
  if train_data.num_pairs == 0:
    raise ValueError('no training pairs')
  lr = learning_rate_schedule(
      config,
      data_lib.num_batches(train_data.num_pairs, int(config.batch_size)),
  )
  keys = mesh_lib.replicate(seed_keys(config), mesh)
  summary = {
      'selection': config.selection,
      'num_train_pairs': train_data.num_pairs,
      'num_heldout_pairs': 0 if held_data is None else held_data.num_pairs,
      'runs': {},
      'selected': {},
  }
  for loss_name in config.losses:
    rows = _train_one_loss(
        config, workdir, loss_name, model, lr, keys, train_data, held_data, mesh
    )
    summary['runs'][loss_name] = {
        f'seed_{k}': r[-1] if r else None for k, r in enumerate(rows)
    }
    if rows and rows[0]:
      k = select_run(rows, config.selection)
      summary['selected'][loss_name] = {
          'seed': k,
          'run_dir': os.path.join(loss_name, f'seed_{k}'),
          'final': rows[k][-1],
      }
  summary['train_seconds'] = time.time() - t0
  if distributed.is_primary():
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
  # summary.json (what predict.load_selected_params reads) is on disk
  # before any process goes on.
  distributed.barrier('train_and_evaluate done')
  return summary
