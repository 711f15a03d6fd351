"""Benchmark: each sharded path on 1, 2 and 8 devices; prints one JSON.

Paths (all through the same functions the jobs call, with a mesh of the
first 1, 2 or 8 devices on 'data'):

- random_rewards: 20,000 random actions scored (default reward model,
  random init, a --bins^2 JH; Fig. 2).
- corner_maps: 4 x --bins^2 actions scored (Fig. 3).
- render_actions: --actions renderings of the phantom scene at --size^2
  pixels (Scene.render_many: actions split over devices).
- ray_cache_build: the ray cache of that scene (a --volume^3 phantom seen at
  --size^2 pixels, tissue labels; rays split over devices).
- train_epoch: one epoch of reward training, paper sizes (100 actions, 3,600
  training pairs, batch 128, 3 seeds; data-parallel over pairs).
- ppo_rollout: one PPO rollout, 3 scenes x 64 environments (actions) of the
  default policy, scored by a 3-seed ensemble of the default reward model
  (the environments split over devices).

On a CPU the devices are simulated (XLA_FLAGS=
--xla_force_host_platform_device_count=8, set by this script before JAX
starts): the 8 'devices' share the machine's cores, so the ratios show the
overhead of splitting, not a speed-up beyond the core count. On a machine
with accelerators the real devices are used (as many as there are, up to 8)
and the JSON adds the renderer's samples per second.

Each figure: median of --repeats calls after a first call that compiles.

  .venv/bin/python benchmarks/scaling.py [--bins 256] [--repeats 3] \
      [--paths random_rewards,ray_cache_build]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

FLAG = '--xla_force_host_platform_device_count=8'


def _reexec_with_devices():
  """Restart with 8 simulated CPU devices unless JAX would see real ones."""
  if FLAG in os.environ.get('XLA_FLAGS', '') or os.environ.get(
      'RLHF_TF_SCALING_CHILD'
  ):
    return
  env = dict(
      os.environ,
      RLHF_TF_SCALING_CHILD='1',
      XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') + ' ' + FLAG).strip(),
  )
  sys.exit(subprocess.call([sys.executable] + sys.argv, env=env))


_reexec_with_devices()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from timing import time_calls  # noqa: E402
from train_reward import synthetic_data  # noqa: E402

from rlhf_tf.agent import policy as policy_lib  # noqa: E402
from rlhf_tf.agent import (
    ppo,  # noqa: E402
    ppo_objective,  # noqa: E402
)
from rlhf_tf.data import phantom  # noqa: E402
from rlhf_tf.devices import mesh as mesh_lib  # noqa: E402
from rlhf_tf.evaluation import probing  # noqa: E402
from rlhf_tf.preferences import scenes  # noqa: E402
from rlhf_tf.render import (
    histogram,  # noqa: E402
    polygon,  # noqa: E402
    ray_cache,  # noqa: E402
)
from rlhf_tf.reward import model as model_lib  # noqa: E402
from rlhf_tf.reward import (
    train,  # noqa: E402
    train_step,  # noqa: E402
)


def _mesh(n):
  return None if n == 1 else mesh_lib.local_mesh(n)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--bins', type=int, default=256)
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--actions', type=int, default=32)
  ap.add_argument('--size', type=int, default=128)
  ap.add_argument('--volume', type=int, default=96)
  ap.add_argument(
      '--paths',
      default='',
      help='comma-separated subset of the paths (default all)',
  )
  args = ap.parse_args()
  counts = [n for n in (1, 2, 8) if n <= jax.local_device_count()]

  config = train.default_config()
  model = model_lib.model_from_config(config.model)
  params = model_lib.init_params(model, jax.random.key(0), args.bins)
  jh = jax.random.uniform(jax.random.key(1), (args.bins, args.bins))
  base = jnp.array([[0.2, 0.1], [0.7, 0.15], [0.75, 0.6], [0.25, 0.5]])

  volume = phantom.make_head_phantom(jax.random.key(0), (args.volume,) * 3)
  render_cfg = scenes.default_config()
  render_cfg.image_size = args.size
  scene = scenes.build_scene(
      'scaling', volume, histogram.default_config(), render_cfg
  )
  actions = np.asarray(
      polygon.random_actions(jax.random.key(3), args.actions, 4)
  )

  data = synthetic_data(args.bins, 100, 4000, 0.15)
  train_np, _ = train.heldout_split(config, data)
  keys = train_step.seed_keys(config)

  def train_epoch(mesh):
    tdata = jax.tree_util.tree_map(jnp.asarray, train_np)
    states = train_step.init_states(keys, model=model, bins=args.bins)
    k = keys
    if mesh is not None:  # (typed PRNG keys have no numpy form)
      tdata, states, k = (
          mesh_lib.replicate(t, mesh) for t in (tdata, states, keys)
      )
    # A copy per call: the train step donates (consumes) its states.
    return lambda: train_step.train_epoch(
        jax.tree_util.tree_map(jnp.copy, states),
        k,
        0,
        tdata,
        model=model,
        learning_rate=1e-3,
        loss_name='ce',
        batch_size=config.batch_size,
        mesh=mesh,
    )[1]

  def ray_cache_build(mesh):
    return lambda: ray_cache.build_ray_cache(
        scene.volume.hu,
        None,
        scene.volume.spacing,
        scene.jh.axes,
        scene.camera,
        scene.bins,
        scene.settings,
        labels=scene.groups,
        mesh=mesh,
    ).tiles

  ppo_cfg = ppo.default_config()
  net = policy_lib.net_from_config(ppo_cfg.policy)
  policy_params = policy_lib.init_params(net, jax.random.key(4), args.bins)
  seeds = [
      model_lib.init_params(model, k, args.bins)
      for k in jax.random.split(jax.random.key(5), 3)
  ]
  ensemble = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *seeds)
  scene_jh = jax.random.uniform(jax.random.key(6), (3, args.bins, args.bins))

  def reward_fn(jh_one, acts):  # [B, B], [N, n, 2] -> [3, N]
    return jax.vmap(
        lambda p: model_lib.score(
            model, p, model_lib.encode(model, p, jh_one), acts
        )
    )(ensemble)

  rollout = jax.jit(ppo_objective.rollout, static_argnums=(0, 1, 5, 7))

  def ppo_rollout(mesh):
    return lambda: rollout(
        net,
        ppo._freeze(ppo_cfg),
        policy_params,
        policy_params,
        scene_jh,
        reward_fn,
        jax.random.key(7),
        mesh,
    )

  paths = {
      'random_rewards': lambda m: lambda: probing.random_action_rewards(
          model, params, jh, jax.random.key(2), num=20000, mesh=m
      )[1],
      'corner_maps': lambda m: lambda: probing.corner_maps(
          model, params, jh, base, mesh=m
      ),
      'render_actions': lambda m: lambda: scene.render_many(actions, mesh=m),
      'ray_cache_build': ray_cache_build,
      'train_epoch': train_epoch,
      'ppo_rollout': ppo_rollout,
  }
  if args.paths:
    paths = {k: paths[k] for k in args.paths.split(',')}
  out = {
      'device_kind': jax.devices()[0].device_kind,
      'platform': jax.devices()[0].platform,
      'local_devices': jax.local_device_count(),
      'cpu_count': os.cpu_count(),
      'bins': args.bins,
      'load_average': round(os.getloadavg()[0], 1),
      'paths': {},
  }
  for name, make in paths.items():
    row = {}
    for n in counts:
      fn = make(_mesh(n))
      first, median, _ = time_calls(fn, args.repeats)
      row[f'{n}_devices_s'] = round(median, 4)
      row[f'{n}_devices_first_call_s'] = round(first, 2)
    for n in counts[1:]:
      row[f'speedup_{n}_vs_1'] = round(
          row['1_devices_s'] / row[f'{n}_devices_s'], 2
      )
    out['paths'][name] = row
  render = out['paths'].get('render_actions')
  if render is None:
    print(json.dumps(out, indent=1))
    return
  render.update(
      num_actions=args.actions,
      image_size=args.size,
      cache_samples=scene.cache.num_samples,
  )
  if out['platform'] != 'cpu':
    for n in counts:
      render[f'samples_per_s_{n}_devices'] = round(
          args.actions * scene.cache.num_samples / render[f'{n}_devices_s']
      )
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  main()
