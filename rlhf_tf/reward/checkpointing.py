"""Orbax checkpoints of the (seed-stacked) reward-model train state.

One CheckpointManager per loss job, in ``<workdir>/<loss>/checkpoints``; the
checkpoint step is the number of completed epochs. Items:

- ``params``    the parameters, stacked over seeds (leading axis = seed),
- ``opt_state`` the optax state, stacked over seeds,
- ``loss_params`` the loss's own learned parameters (L_D's tie parameter),
                stacked over seeds; absent for losses without any (orbax
                cannot save an empty tree),
- ``ema_params`` the moving average of the parameters (train.py's
                ``param_ema``), stacked over seeds; absent when off. Where
                present it is what ``load_params`` returns: the reward.
- ``history``   JSON: ``{"seed_<k>": [per-epoch metrics, ...], ...}`` so that a
                resumed run rewrites its metrics.jsonl files exactly.

Orbax writes each step to a temporary folder and renames it when complete, so
a run killed during a save (kill -9) leaves the previous step as the latest.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp


def open_manager(
    directory: str, max_to_keep: int = 3, use_async: bool = False
) -> ocp.CheckpointManager:
  """A CheckpointManager keeping the last ``max_to_keep`` steps."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True, enable_async_checkpointing=use_async
  )
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=options,
      item_names=(
          'params',
          'opt_state',
          'history',
          'loss_params',
          'ema_params',
      ),
  )


def save(
    mngr: ocp.CheckpointManager,
    epoch: int,
    params,
    opt_state,
    history: dict,
    loss_params=None,
    ema_params=None,
) -> None:
  """Saves the state after ``epoch`` completed epochs.

  The arrays are copied to host numpy first: the train step donates its
  input buffers, so an asynchronous save must not read device buffers that
  the next step reuses.
  """
  params, opt_state, loss_params, ema_params = jax.tree_util.tree_map(
      np.array, (params, opt_state, loss_params or {}, ema_params or {})
  )
  items = dict(
      params=ocp.args.StandardSave(params),
      opt_state=ocp.args.StandardSave(opt_state),
      history=ocp.args.JsonSave(history),
  )
  if loss_params:
    items['loss_params'] = ocp.args.StandardSave(loss_params)
  if ema_params:
    items['ema_params'] = ocp.args.StandardSave(ema_params)
  mngr.save(epoch, args=ocp.args.Composite(**items))


def restore(
    mngr: ocp.CheckpointManager,
    epoch: int,
    params_like,
    opt_state_like,
    loss_params_like=None,
) -> Tuple[Any, Any, Any, dict]:
  """Restores (params, opt_state, loss_params, history) into the structure
  of the *_like ({} loss_params when loss_params_like is empty)."""
  abstract = _abstract
  items = dict(
      params=ocp.args.StandardRestore(abstract(params_like)),
      opt_state=ocp.args.StandardRestore(abstract(opt_state_like)),
      history=ocp.args.JsonRestore(),
  )
  if loss_params_like:
    items['loss_params'] = ocp.args.StandardRestore(abstract(loss_params_like))
  out = mngr.restore(epoch, args=ocp.args.Composite(**items))
  loss_params = out['loss_params'] if loss_params_like else {}
  return out['params'], out['opt_state'], loss_params, out['history']


def _abstract(tree):
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree
  )


def has_ema_params(directory: str, epoch: int) -> bool:
  """Whether the step ``epoch`` of a folder holds ``ema_params``."""
  return os.path.isdir(
      os.path.join(os.path.abspath(directory), str(epoch), 'ema_params')
  )


def restore_ema_params(mngr: ocp.CheckpointManager, epoch: int, like):
  """The ``ema_params`` of step ``epoch`` in the structure of ``like``."""
  out = mngr.restore(
      epoch,
      args=ocp.args.Composite(
          ema_params=ocp.args.StandardRestore(_abstract(like))
      ),
  )
  return out['ema_params']


def load_params(directory: str, epoch: Optional[int] = None):
  """Seed-stacked params of step ``epoch`` (default: latest) from a folder:
  the moving average of the parameters where the run kept one, else the
  parameters."""
  with open_manager(directory) as mngr:
    step = mngr.latest_step() if epoch is None else epoch
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {directory}')
    name = 'ema_params' if has_ema_params(directory, step) else 'params'
    out = mngr.restore(
        step, args=ocp.args.Composite(**{name: ocp.args.StandardRestore()})
    )
  return out[name]
