"""Benchmark: the paper's reward-model training protocol on CPU; one JSON.

Synthetic data of the paper's sizes (§3): 1 scene, a JH of --bins x --bins
(default 256), 100 actions, 4000 preferences (~15 % ties: the paper has 613 /
4000), 75 epochs, batch 128, both losses (L_C, L_L) x 3 seeds, with the
default model config and checkpoint interval: the whole
``train.train_and_evaluate`` (compilation, per-epoch evaluation, metrics and
orbax checkpoints included). Goal: <= 60 s on 2 CPU cores. The JSON gives
the wall time and the process's CPU time (all threads; on a machine shared
with other work the wall time overstates the run, the CPU time does not),
and the load average around the run.

It also times one epoch of the step (3 seeds) scoring the reward table once
(batch_rewards.py; the default at 100 actions) against scoring the 2 x 128
pair members, and, with --naive-epochs > 0, a NAIVE step that runs the JH
encoder for every pair member, extrapolated to the full run.

  .venv/bin/python benchmarks/train_reward.py [--bins 256] [--epochs 75]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from rlhf_tf.reward import (
    batch_rewards,  # noqa: E402
    train,  # noqa: E402
    train_step,  # noqa: E402
)
from rlhf_tf.reward import data as data_lib  # noqa: E402
from rlhf_tf.reward import losses as losses_lib  # noqa: E402
from rlhf_tf.reward import model as model_lib  # noqa: E402


def synthetic_data(
    bins: int, num_actions: int, num_pairs: int, tie_rate: float, seed: int = 0
) -> data_lib.PreferenceData:
  """One scene; the hidden score prefers polygons near (0.6, 0.3)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:bins, 0:bins] / bins
  jh = np.exp(-((xx - 0.5) ** 2 + (yy - 0.2) ** 2) / 0.02)
  jh = (jh + 0.1 * rng.random((bins, bins))).astype(np.float32)
  jh /= jh.max()
  actions = rng.random((num_actions, 4, 2)).astype(np.float32)
  score = -np.linalg.norm(actions.mean(1) - [0.6, 0.3], axis=-1)
  left = rng.integers(0, num_actions, num_pairs)
  right = (left + rng.integers(1, num_actions, num_pairs)) % num_actions
  diff = score[left] - score[right]
  tie_width = np.quantile(np.abs(diff), tie_rate)
  target = np.where(np.abs(diff) < tie_width, 0.5, (diff > 0) * 1.0)
  examples = [(0, l, r, t) for l, r, t in zip(left, right, target)]
  return data_lib.from_examples([jh], [actions], examples)


@functools.partial(jax.jit, static_argnames=('model',), donate_argnums=(0,))
def naive_step(state, key, i, w, data, *, model):
  """The straightforward step: encode jh[scene] for EVERY pair member.

  Same model, loss (L_C), optimizer and batch as train_step.train_step, but
  2 x batch JH encodings per step (each member its own dropout mask).
  """
  tx = train_step.make_optimizer(1e-3)
  rng = jax.random.fold_in(jax.random.fold_in(key, 2), state.step)
  scene = data.scene[i]

  def objective(params):
    jh = jnp.concatenate([data.jh[scene], data.jh[scene]])  # [2b, B, B]
    acts = jnp.concatenate(
        [data.actions[scene, data.left[i]], data.actions[scene, data.right[i]]]
    )
    z = model_lib.encode(model, params, jh, True, rng)
    rl, rr = jnp.split(model_lib.score(model, params, z, acts), 2)
    return losses_lib.loss_ce(rl, rr, data.target[i], w)

  loss, grads = jax.value_and_grad(objective)(state.params)
  trained = (state.params, state.loss_params)  # L_C: loss_params = {}
  updates, opt_state = tx.update((grads, {}), state.opt_state, trained)
  params, loss_params = optax.apply_updates(trained, updates)
  return (
      train_step.TrainState(state.step + 1, params, opt_state, loss_params),
      loss,
  )


def naive_epoch(state, key, epoch, data, *, model, batch_size):
  idx, weight = data_lib.epoch_batches(
      jax.random.fold_in(key, 1), epoch, data.target.shape[0], batch_size
  )
  for b in range(idx.shape[0]):
    state, loss = naive_step(state, key, idx[b], weight[b], data, model=model)
  return state, loss


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--bins', type=int, default=256)
  parser.add_argument('--epochs', type=int, default=75)
  parser.add_argument('--naive-epochs', type=int, default=0)
  parser.add_argument('--losses', default='ce,nll')
  parser.add_argument(
      '--seeds',
      type=int,
      default=3,
      help='seeds trained together per loss (paper: 3)',
  )
  args = parser.parse_args()
  args.loss = args.losses.split(',')[0]

  data = synthetic_data(args.bins, 100, 4000, 0.15)
  config = train.default_config()
  config.num_seeds = args.seeds
  config.losses = tuple(args.losses.split(','))
  config.num_epochs = args.epochs
  model = model_lib.model_from_config(config.model)
  feat, act_feat = model_lib.shapes_summary(model, args.bins)

  load_before = os.getloadavg()
  with tempfile.TemporaryDirectory() as workdir:
    t0, c0 = time.perf_counter(), time.process_time()
    summary = train.train_and_evaluate(config, workdir, data)
    full_s = time.perf_counter() - t0
    full_cpu_s = time.process_time() - c0
  load_after = os.getloadavg()
  final = {loss: summary['selected'][loss]['final'] for loss in config.losses}

  # One epoch of the step (all seeds of one loss) after its compilation.
  train_np, _ = data_lib.split_pairs(
      data, config.held_out_fraction, config.split_seed
  )
  tdata = jax.tree_util.tree_map(jnp.asarray, train_np)
  keys = train_step.seed_keys(config)
  states = train_step.init_states(keys, model=model, bins=args.bins)
  kw = dict(
      model=model,
      learning_rate=1e-3,
      loss_name=args.loss,
      batch_size=config.batch_size,
  )
  state0 = jax.tree_util.tree_map(lambda x: jnp.copy(x[0]), states)
  states, _, _ = train_step.train_epoch(states, keys, 0, tdata, **kw)
  jax.block_until_ready(states)
  t0 = time.perf_counter()
  states, _, _ = train_step.train_epoch(states, keys, 1, tdata, **kw)
  jax.block_until_ready(states)
  epoch_s = time.perf_counter() - t0
  out = {
      'benchmark': 'reward_model_training',
      'device': str(jax.devices()[0]),
      'cpu_count': os.cpu_count(),
      'bins': args.bins,
      'scenes': 1,
      'actions': 100,
      'pairs': 4000,
      'ties': int(np.sum(np.asarray(data.target) == 0.5)),
      'train_pairs': summary['num_train_pairs'],
      'heldout_pairs': summary['num_heldout_pairs'],
      'epochs': args.epochs,
      'batch_size': config.batch_size,
      'losses': list(config.losses),
      'seeds': args.seeds,
      'reward_table_per_step': batch_rewards.use_table(
          1, 100, config.batch_size
      ),
      'model': {
          k: (list(v) if isinstance(v, tuple) else v)
          for k, v in config.model.to_dict().items()
      },
      'image_features': feat,
      'action_features': act_feat,
      'num_params': model_lib.expected_param_count(model, args.bins),
      'full_run_s': round(full_s, 2),
      'full_run_cpu_s': round(full_cpu_s, 2),
      'load_average_before_after': [
          round(load_before[0], 1),
          round(load_after[0], 1),
      ],
      'goal_s': 60.0,
      'meets_goal': full_s <= 60.0,
      'checkpoint_every_epochs': config.checkpoint_every_epochs,
      'full_run_note': 'train_and_evaluate wall time incl. compilation, '
      'per-epoch evaluation, metrics.jsonl and orbax '
      'checkpoints (the default interval)',
      'epoch_s': round(epoch_s, 4),
      'epoch_note': f'one epoch of {args.seeds} seeds of {args.loss} after '
      f'compilation',
      'final_heldout_accuracy': {
          l: f.get('heldout_accuracy') for l, f in final.items()
      },
      'final_train_loss': {l: f.get('train_loss') for l, f in final.items()},
  }
  if args.naive_epochs:
    nkw = dict(model=model, batch_size=config.batch_size)
    state0, _ = naive_epoch(state0, keys[0], 0, tdata, **nkw)
    jax.block_until_ready(state0)
    t0 = time.perf_counter()
    for e in range(args.naive_epochs):
      state0, _ = naive_epoch(state0, keys[0], e + 1, tdata, **nkw)
    jax.block_until_ready(state0)
    naive_epoch_s = (time.perf_counter() - t0) / args.naive_epochs
    out.update(
        naive_epoch_one_seed_s=round(naive_epoch_s, 4),
        naive_extrapolated_train_s=round(
            naive_epoch_s * args.epochs * args.seeds * len(config.losses), 1
        ),
        naive_note=f'naive (one seed) timed for {args.naive_epochs} '
        f'epochs after compilation, extrapolated to '
        f'{args.epochs} epochs x seeds x losses',
    )
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  main()
