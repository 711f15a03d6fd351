"""Contextual-bandit PPO against a learned reward, KL-tied to the warm start.

Phase three of the RLHF pipeline the paper follows (§2, Ziegler et al.),
written in the PureJaxRL ``ppo_continuous_action.py`` style: the whole run is
one jitted function, updates in a lax.scan, PPO epochs and minibatches in
nested scans, vmappable over seeds.

One step per episode (the paper's one-shot agent, §2): every update samples
N = batch_per_scene actions for each of the S scenes (jh [S, B, B]) from the
current policy pi_old, scores them with the reward model and ends. With
episodes of length one the return is the reward, so GAE(gamma, lambda)
reduces to A = R - V(s) for every gamma, lambda; no bootstrapping.

The rollout (sampling, scoring, KL-shaped reward, advantages) and the
clipped PPO loss of one update live in ppo_objective.py; this module runs
the updates (lax.scan chunks, one compile cache, the gold-score monitor).

Randomness: k = fold_in(fold_in(key, 0), update); actions from
fold_in(k, 0), minibatch order of epoch e from fold_in(fold_in(k, 1), e);
monitor samples from fold_in(fold_in(key, 1), update). Nothing is carried,
so chunked training equals one long scan bit for bit.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, Sequence, Union

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rlhf_tf.agent import policy as policy_lib
from rlhf_tf.agent import ppo_objective
from rlhf_tf.devices import mesh as mesh_lib

_TRAIN, _EVAL = 0, 1  # purposes of the run key
_SAMPLE, _SHUFFLE = 0, 1  # purposes of an update key


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_updates = 200
  c.batch_per_scene = 64  # actions sampled per scene per update (N)
  c.num_epochs = 4
  c.num_minibatches = 4  # S * N must be divisible by this
  c.clip_eps = 0.2
  c.vf_coef = 0.5
  c.ent_coef = 0.0
  c.kl_beta = 0.05
  c.lr = 5e-5  # wide flattened-conv actor: 3e-4 gave approx-KL 0.3 and
  #               70 % clipped in the first update after BC (256 JH)
  c.max_grad_norm = 0.5
  c.ensemble_k = 1.0  # r_cons = mean - k * std over an [M, N] ensemble
  c.normalize_advantages = True
  c.policy = policy_lib.default_config()
  return c


@flax.struct.dataclass
class TrainState:
  params: Any
  opt_state: Any
  key: jax.Array  # run key of purpose _TRAIN
  update: jax.Array  # int32 [], updates done


def make_optimizer(config) -> optax.GradientTransformation:
  return optax.chain(
      optax.clip_by_global_norm(config.max_grad_norm),
      optax.adam(config.lr, eps=1e-5),
  )


def init_state(config, key, params_init) -> TrainState:
  return TrainState(
      params=params_init,
      opt_state=make_optimizer(config).init(params_init),
      key=jax.random.fold_in(key, _TRAIN),
      update=jnp.zeros((), jnp.int32),
  )


def make_chunk(config, reward_fn: Callable, num_updates: int, mesh=None):
  """Returns chunk(state, jh [S,B,B], ref_params) -> (state, metrics).

  Pure and jittable; runs ``num_updates`` PPO updates in one lax.scan
  (rollout rewards split over ``mesh``'s devices, see score_rollout).
  metrics[name] has leading axis [num_updates] ('mode': [U, S, n, 2]).
  """
  net = policy_lib.net_from_config(config.policy)
  tx = make_optimizer(config)
  grad_fn = jax.value_and_grad(ppo_objective.ppo_loss, has_aux=True)

  def update_step(state: TrainState, jh, ref_params):
    k = jax.random.fold_in(state.key, state.update)
    batch, info = ppo_objective.rollout(
        net,
        config,
        state.params,
        ref_params,
        jh,
        reward_fn,
        jax.random.fold_in(k, _SAMPLE),
        mesh,
    )
    total = batch.adv.shape[0]
    if total % config.num_minibatches:
      raise ValueError(
          f'S * batch_per_scene = {total} is not divisible by '
          f'num_minibatches = {config.num_minibatches}'
      )
    mb = total // config.num_minibatches
    k_shuffle = jax.random.fold_in(k, _SHUFFLE)

    def epoch(carry, e):
      perm = jax.random.permutation(jax.random.fold_in(k_shuffle, e), total)
      mbs = jax.tree.map(
          lambda x: x[perm].reshape((config.num_minibatches, mb) + x.shape[1:]),
          batch,
      )

      def mb_step(carry, minibatch):
        params, opt_state = carry
        (_, aux), grads = grad_fn(
            params,
            net,
            jh,
            minibatch,
            config.clip_eps,
            config.vf_coef,
            config.ent_coef,
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), aux

      return jax.lax.scan(mb_step, carry, mbs)

    (params, opt_state), aux = jax.lax.scan(
        epoch, (state.params, state.opt_state), jnp.arange(config.num_epochs)
    )
    metrics = dict(info, **jax.tree.map(jnp.mean, aux))
    metrics['nonfinite_loss'] = ~jnp.all(jnp.isfinite(aux['total_loss']))
    return (
        TrainState(
            params=params,
            opt_state=opt_state,
            key=state.key,
            update=state.update + 1,
        ),
        metrics,
    )

  def chunk(state, jh, ref_params):
    jh = jnp.asarray(jh, jnp.float32)
    return jax.lax.scan(
        lambda s, _: update_step(s, jh, ref_params),
        state,
        None,
        length=num_updates,
    )

  return chunk


def _freeze(config) -> ml_collections.FrozenConfigDict:
  if isinstance(config, ml_collections.FrozenConfigDict):
    return config
  return ml_collections.FrozenConfigDict(config)


@functools.lru_cache(maxsize=64)
def _jitted(build: Callable, *args):
  """jax.jit(build(*args)), compiled once per (build, args): the one cache
  of this module's programs (chunks, whole runs, the monitor), keyed by the
  frozen config, the reward_fn, sizes and the mesh."""
  return jax.jit(build(*args))


def _whole_run(config, reward_fn, mesh=None):
  """(key, jh, params_init, ref_params) -> (state, metrics) of
  config.num_updates updates from a fresh state."""
  chunk = make_chunk(config, reward_fn, config.num_updates, mesh)

  def run(key, jh, params_init, ref_params):
    return chunk(init_state(config, key, params_init), jh, ref_params)

  return run


def _mesh(mesh):
  """None for no mesh or one device (the unsharded program)."""
  return mesh if mesh_lib.data_size(mesh) > 1 else None


def check_finite(metrics: Dict[str, Any], first_update: int = 0) -> None:
  """Raises FloatingPointError naming the first update with a non-finite
  reward or loss. metrics[...] arrays [..., U] (leading seed axes allowed)."""
  for flag, what in (
      ('nonfinite_reward', 'reward from reward_fn'),
      ('nonfinite_loss', 'PPO loss'),
  ):
    bad = np.asarray(metrics[flag]).reshape(-1, np.shape(metrics[flag])[-1])
    hits = np.flatnonzero(bad.any(axis=0))
    if hits.size:
      raise FloatingPointError(
          f'PPO update {first_update + int(hits[0])}: ' f'non-finite {what}'
      )


def train(
    config, key, jh, params_init, ref_params, reward_fn: Callable, mesh=None
):
  """Runs config.num_updates PPO updates as ONE jitted function.

  Vmappable over seeds: jax.vmap(train, in_axes=(None, 0, None, None, None,
  None)); to jit that, mark config (frozen: ml_collections.FrozenConfigDict)
  and reward_fn static. Compiled programs are cached per (config, reward_fn).
  Called eagerly, it checks the metrics (check_finite) before returning;
  under vmap / jit the caller should call check_finite.

  Args:
    config: default_config() fields (config.policy builds the net).
    key: PRNG key.
    jh: [S, B, B] joint histograms.
    params_init: initial policy parameters (usually the warm start).
    ref_params: reference policy parameters for the KL penalty.
    reward_fn: jittable (jh [B, B], actions [N, n, 2]) -> [N] or [M, N].
    mesh: optional jax.sharding.Mesh: rollout rewards split over devices.

  Returns:
    (final params, metrics dict of arrays [num_updates]).
  """
  state, metrics = _jitted(_whole_run, _freeze(config), reward_fn, _mesh(mesh))(
      key, jh, params_init, ref_params
  )
  if not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(metrics)):
    check_finite(metrics)
  return state.params, metrics


def _monitor(config, reward_fn, num: int):
  """(params, ref_params, jh, key) -> num sampled actions and the mode per
  scene, their conservative proxy rewards and the KL to the reference."""
  net = policy_lib.net_from_config(config.policy)

  def evaluate(params, ref_params, jh, key):
    mu, log_std, _ = net.apply(params, jh)
    noise = jax.random.normal(key, (jh.shape[0], num, mu.shape[-1]))
    sampled = policy_lib.to_polygon(
        mu[:, None] + jnp.exp(log_std)[:, None] * noise, net.n_vertices
    )  # [S, K, n, 2]
    modes = policy_lib.to_polygon(mu, net.n_vertices)  # [S, n, 2]
    both = jnp.concatenate([sampled, modes[:, None]], axis=1)
    _, r_cons, _ = ppo_objective.combine_ensemble(
        jax.vmap(reward_fn)(jh, both), config.ensemble_k
    )
    mu_ref, log_std_ref, _ = net.apply(ref_params, jh)
    kl = jnp.mean(policy_lib.gaussian_kl(mu, log_std, mu_ref, log_std_ref))
    return sampled, modes, r_cons[:, :num], r_cons[:, num], kl

  return evaluate


def train_with_monitor(
    config,
    key,
    jh,
    params_init,
    ref_params,
    reward_fn: Callable,
    gold_fn: Union[Callable, Sequence[Callable]],
    every: int,
    num_eval_samples: int = 8,
    mesh=None,
):
  """``train`` in chunks of ``every`` updates with a gold-score monitor.

  The state is carried between jitted chunks (same numbers as one long
  scan). Before the first update and after every chunk, num_eval_samples
  actions per scene and the mode are scored by the proxy (reward_fn, the
  optimised conservative reward) and by gold_fn (numpy, not jitted).

  Args:
    gold_fn: gold(actions np [K, n, 2]) -> np [K] for a single scene, or a
      sequence of S such callables (one per scene).
    every: updates per chunk (the last chunk may be shorter).
    mesh: optional jax.sharding.Mesh: rollout rewards split over devices.

  Returns:
    (params, metrics [num_updates], series) with series entries [P]:
    update, kl, sqrt_kl, proxy_reward, proxy_reward_mode, gold_score,
    gold_score_mode (means over scenes and samples), P = #chunks + 1.
  """
  cfg, jh = _freeze(config), jnp.asarray(jh, jnp.float32)
  golds = list(gold_fn) if isinstance(gold_fn, (list, tuple)) else [gold_fn]
  if len(golds) != jh.shape[0]:
    raise ValueError(f'{len(golds)} gold functions for {jh.shape[0]} scenes')
  if every < 1:
    raise ValueError(f'every must be >= 1, got {every}')
  evaluate = _jitted(_monitor, cfg, reward_fn, int(num_eval_samples))
  eval_key = jax.random.fold_in(key, _EVAL)
  series = {
      k: []
      for k in (
          'update',
          'kl',
          'sqrt_kl',
          'proxy_reward',
          'proxy_reward_mode',
          'gold_score',
          'gold_score_mode',
      )
  }

  def record(params, step):
    sampled, modes, proxy, proxy_mode, kl = jax.tree.map(
        np.asarray,
        evaluate(params, ref_params, jh, jax.random.fold_in(eval_key, step)),
    )
    gold = [np.asarray(g(sampled[s]), np.float64) for s, g in enumerate(golds)]
    gold_mode = [
        float(np.asarray(g(modes[s][None])).reshape(-1)[0])
        for s, g in enumerate(golds)
    ]
    for name, v in (
        ('update', step),
        ('kl', float(kl)),
        ('sqrt_kl', math.sqrt(max(float(kl), 0.0))),
        ('proxy_reward', float(np.mean(proxy))),
        ('proxy_reward_mode', float(np.mean(proxy_mode))),
        ('gold_score', float(np.mean(gold))),
        ('gold_score_mode', float(np.mean(gold_mode))),
    ):
      series[name].append(v)

  state = init_state(cfg, key, params_init)
  record(state.params, 0)
  chunks, done = [], 0
  while done < cfg.num_updates:
    n = min(int(every), cfg.num_updates - done)
    state, metrics = _jitted(make_chunk, cfg, reward_fn, n, _mesh(mesh))(
        state, jh, ref_params
    )
    check_finite(metrics, first_update=done)
    chunks.append(metrics)
    done += n
    record(state.params, done)
  metrics = jax.tree.map(lambda *xs: np.concatenate(xs), *chunks)
  return state.params, metrics, {k: np.asarray(v) for k, v in series.items()}
