"""Inference with a trained reward model: its checkpoints and its rewards.

- :func:`load_stacked_params`: the seed-stacked parameters of one loss's
  runs from a training workdir (``<workdir>/<loss>/checkpoints``; see
  train.py), :func:`latest_epoch` the epoch they hold; :func:`load_params`
  one run's;
  :func:`load_selected_params` those of each loss's selected run,
  :func:`selected_tie_nus` their learned tie parameters (summary.json) and
  :func:`load_every_run` those of every run.
- :func:`predict_rewards`: eval-mode r(JH, a) for many actions of one JH,
  the JH encoded once and the actions scored in fixed-size chunks (Fig. 2 uses
  20,000 random actions, Fig. 3 one action per JH pixel);
  :func:`every_seed_rewards` the same under every seed of seed-stacked
  parameters (the ensemble's raw rewards, [S, N]), and
  :func:`every_seed_scene_rewards` those of a store scene's actions
  (disagreement pairs in the preference UI);
  :func:`ensemble_mean_rewards` their mean on one scale (each seed z-scored
  against the fixed reference actions of reward/ensemble.py), [N].
"""

from __future__ import annotations

import functools
import json
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.preferences import dataset
from rlhf_tf.reward import checkpointing
from rlhf_tf.reward import ensemble as ensemble_lib
from rlhf_tf.reward import model as model_lib


def load_stacked_params(
    workdir: str, loss_name: str, epoch: Optional[int] = None
) -> dict:
  """Parameters of every seed of one loss (leading axis = seed) from a
  training workdir's checkpoints (default: latest)."""
  return checkpointing.load_params(
      os.path.join(workdir, loss_name, 'checkpoints'), epoch
  )


def latest_epoch(workdir: str, loss_name: str) -> Optional[int]:
  """The latest epoch saved in a training workdir's checkpoints of one
  loss; None when none is saved yet."""
  with checkpointing.open_manager(
      os.path.join(workdir, loss_name, 'checkpoints')
  ) as mngr:
    return mngr.latest_step()


def load_params(
    workdir: str, loss_name: str, seed_index: int, epoch: Optional[int] = None
) -> dict:
  """Parameters of one run from its job's checkpoints (default: latest)."""
  stacked = load_stacked_params(workdir, loss_name, epoch)
  return jax.tree_util.tree_map(lambda x: jnp.asarray(x[seed_index]), stacked)


def selected_runs(workdir: str) -> dict:
  """{loss: {'seed', 'run_dir', 'final'}} of the run each loss's selection
  rule picked (train.py's summary.json)."""
  with open(os.path.join(workdir, 'summary.json')) as f:
    return json.load(f)['selected']


def load_selected_params(workdir: str) -> dict:
  """{loss: parameters of the run its selection rule picked} of a
  training workdir (train.py's summary.json)."""
  return {
      loss: load_params(workdir, loss, sel['seed'])
      for loss, sel in selected_runs(workdir).items()
  }


def selected_tie_nus(workdir: str) -> dict:
  """{loss: learned tie parameter nu} of the selected runs of the losses
  that learn one (L_D)."""
  return {
      loss: sel['final']['tie_nu']
      for loss, sel in selected_runs(workdir).items()
      if sel['final'].get('tie_nu') is not None
  }


def load_every_run(workdir: str) -> tuple[dict, dict]:
  """({'<loss>/seed_<k>': params}, {'<loss>/seed_<k>': learned nu}) of
  every trained run of a training workdir, not only the selected ones."""
  with open(os.path.join(workdir, 'summary.json')) as f:
    runs = json.load(f)['runs']
  params, nus = {}, {}
  for loss, by_seed in runs.items():
    for name, final in by_seed.items():
      key = f'{loss}/{name}'
      params[key] = load_params(workdir, loss, int(name.split('_')[1]))
      if final and final.get('tie_nu') is not None:
        nus[key] = final['tie_nu']
  return params, nus


@functools.partial(jax.jit, static_argnames=('model',))
def _encode_eval(params, jh, *, model):
  return model_lib.encode(model, params, jh)


@functools.partial(jax.jit, static_argnames=('model',))
def _score_chunk(params, z, actions, *, model):
  return model_lib.score(model, params, z, actions)


def predict_rewards(params, config, jh, actions, chunk_size=None) -> np.ndarray:
  """Eval-mode rewards r(JH, a) [N] for jh [B, B] and actions [N, n, 2].

  The JH is encoded once; actions are scored in chunks of ``chunk_size``
  (default config.predict_chunk), the last chunk zero-padded so that one
  compiled program serves every N (e.g. the 20,000 actions of Fig. 2).
  """
  model = model_lib.model_from_config(config.model)
  chunk = int(chunk_size or config.predict_chunk)
  actions = np.asarray(actions, np.float32)
  if np.ndim(jh) != 2 or actions.ndim != 3:
    raise ValueError(
        f'need jh [B, B] and actions [N, n, 2], got '
        f'{np.shape(jh)} and {actions.shape}'
    )
  n = actions.shape[0]
  z = _encode_eval(params, jnp.asarray(jh, jnp.float32), model=model)
  out = []
  for start in range(0, n, chunk):
    part = actions[start : start + chunk]
    pad = chunk - part.shape[0]
    if pad:
      part = np.concatenate(
          [part, np.zeros((pad,) + part.shape[1:], np.float32)]
      )
    out.append(
        np.asarray(_score_chunk(params, z, jnp.asarray(part), model=model))[
            : chunk - pad
        ]
    )
  return np.concatenate(out) if out else np.zeros((0,), np.float32)


def every_seed_rewards(
    stacked_params, config, jh, actions, chunk_size=None
) -> np.ndarray:
  """Eval-mode rewards [S, N] of actions [N, n, 2] on jh [B, B] under every
  seed of ``stacked_params`` (leading axis = seed, as checkpointed), one
  seed at a time with ``predict_rewards``."""
  num_seeds = int(jax.tree_util.tree_leaves(stacked_params)[0].shape[0])
  return np.stack(
      [
          predict_rewards(
              jax.tree_util.tree_map(lambda x, s=s: x[s], stacked_params),
              config,
              jh,
              actions,
              chunk_size,
          )
          for s in range(num_seeds)
      ]
  )


def ensemble_mean_rewards(
    stacked_params, config, jh, actions, chunk_size=None
) -> np.ndarray:
  """The seeds' mean standardised reward [N] of actions [N, n, 2] on jh
  [B, B]: mean_s z_s, z_s = (r_s - mean_ref r_s) / std_ref r_s over
  ensemble.reference_actions on the same JH (Bradley-Terry fixes neither a
  seed's offset nor its scale, so raw rewards of seeds do not average).
  One seed: a positive affine map of its raw reward (same order)."""
  reference = ensemble_lib.reference_actions(np.shape(actions)[1])
  raw = every_seed_rewards(stacked_params, config, jh, actions, chunk_size)
  ref = every_seed_rewards(stacked_params, config, jh, reference, chunk_size)
  return np.mean(ensemble_lib.standardise(raw, ref), axis=0)


def every_seed_scene_rewards(
    workdir: str, loss_name: str, config, store, scene_id: str
) -> np.ndarray:
  """[M, A] rewards of a store scene's actions under every seed of a loss
  trained in a training workdir (``<workdir>/<loss>/checkpoints``; config:
  the reward config)."""
  folder = os.path.join(workdir, loss_name, 'checkpoints')
  if not os.path.isdir(folder):
    raise FileNotFoundError(
        f'no reward checkpoints in {folder}; train one '
        f'with experiments/reward_ce.py first'
    )
  stacked = load_stacked_params(workdir, loss_name)
  jh = dataset.scene_jh(store, scene_id).image
  actions = store.vertices_array(scene_id)
  return every_seed_rewards(stacked, config, jh, actions)
