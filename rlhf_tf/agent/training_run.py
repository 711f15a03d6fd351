"""One run of the RLHF agent (sec. 2, 6): trained on the agent's training
scenes, then evaluated on held-out ones.

  trained = train(config, workdir, out_dir)
  scores, (images, titles) = evaluate(config, trained)

Completes the RLHF pipeline of Ziegler et al.: (1) a reward model from
preferences (reused from <reward_workdir>/reward, or trained first on the
store's votes, reward.from_store), (2) a supervised warm start of the policy
by behaviour cloning of the expert actions of the training scenes, (3) PPO
against the reward model (agent.proxy_reward) with a KL penalty to the
warm-start policy (agent.ppo), the simulated inspector's score monitored
every agent.monitor_every updates. The scenes are agent.scene_split's.

``train`` writes the training's own record to out_dir: metrics.jsonl (per
PPO update) and checkpoint/ (orbax, policy params). The figures are drawn
from what ``train`` and ``evaluate`` return (jobs/agent.py): the agent
library stays below evaluation/.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from rlhf_tf.agent import policy as policy_lib
from rlhf_tf.agent import ppo, proxy_reward, scene_split, warm_start
from rlhf_tf.data import sources
from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.render import polygon
from rlhf_tf.reward import from_store


class TrainedAgent(NamedTuple):
  """What ``train`` hands ``evaluate`` and the caller's summary."""

  net: policy_lib.PolicyValueNet
  params: Any  # the agent's policy params (after PPO)
  warm_start_params: Any  # the warm start's (PPO's KL reference)
  train_scene_ids: list[str]
  held_out: list[dataset.SceneSpec]  # checked unseen by agent and reward
  bc: dict  # behaviour cloning metrics (warm_start.behaviour_clone)
  series: dict  # PPO's monitor (figures_agent.overoptimisation)
  eval_key: jax.Array  # the held-out evaluation's random actions


def _build(config, spec: dataset.SceneSpec, image_size: int):
  volume = sources.load_volume(ml_collections.ConfigDict(spec.volume))
  render = config.render.copy_and_resolve_references()
  render.image_size = image_size
  return scenes_lib.build_scene(spec.scene_id, volume, config.histogram, render)


def _gold(scene, config):
  return lambda actions: inspector_lib.score_actions(
      scene, actions, config.inspector
  )


def _ensure_reward(config, workdir: str) -> str:
  """The reward model's folder; trained here first when there is none."""
  root = config.reward_workdir or workdir
  reward_dir = os.path.join(root, 'reward')
  if not os.path.exists(os.path.join(reward_dir, 'summary.json')):
    logging.info('no reward model in %s: training one first', reward_dir)
    from_store.train_on_store(config, root)
  return reward_dir


def train(config, workdir: str, out_dir: str) -> TrainedAgent:
  """Warm start and PPO on the training scenes against the reward of
  <reward_workdir or workdir>/reward; metrics.jsonl and checkpoint/ to
  out_dir (process 0 writes; every process calls orbax)."""
  a = config.agent
  train_specs, held_out = scene_split.scene_lists(config)
  reward_dir = _ensure_reward(config, workdir)
  scene_split.check_reward_scenes(
      dataset.store_path(config, os.path.dirname(reward_dir)), held_out
  )
  reward_fn = proxy_reward.load_reward_fn(config, reward_dir)
  scenes = [_build(config, s, a.gold_image_size) for s in train_specs]
  logging.info(
      'training scenes: %s; held out: %s',
      [s.scene_id for s in scenes],
      [s.scene_id for s in held_out],
  )
  jh = np.stack([s.jh.image for s in scenes]).astype(np.float32)
  experts = np.stack([s.experts for s in scenes])
  net = policy_lib.net_from_config(a.ppo.policy)
  k_init, k_ppo, k_eval = jax.random.split(jax.random.key(a.seed), 3)
  ref_params, bc = warm_start_policy(config, net, k_init, jh, experts)
  params, series = train_ppo(
      config,
      k_ppo,
      jh,
      ref_params,
      reward_fn,
      [_gold(s, config) for s in scenes],
      out_dir,
  )
  return TrainedAgent(
      net=net,
      params=params,
      warm_start_params=ref_params,
      train_scene_ids=[s.scene_id for s in scenes],
      held_out=held_out,
      bc=bc,
      series=series,
      eval_key=k_eval,
  )


def warm_start_policy(config, net, key, jh, experts):
  """Behaviour cloning of the experts [S, E, n, 2] of the training scenes
  (JHs [S, B, B]); returns (policy params, BC metrics)."""
  params = policy_lib.init_params(net, key, jh.shape[-1])
  logging.info(
      'warm start: behaviour cloning on %d experts / scene', experts.shape[1]
  )
  return warm_start.behaviour_clone(
      config.agent.warm_start, net, params, jh, experts
  )


def train_ppo(config, key, jh, ref_params, reward_fn, golds, out_dir: str):
  """PPO from the warm start with a KL penalty to it, the inspector's score
  monitored every agent.monitor_every updates; writes metrics.jsonl and
  checkpoint/. Returns (params, monitor series)."""
  a = config.agent
  logging.info('PPO: %d updates', a.ppo.num_updates)
  params, metrics, series = ppo.train_with_monitor(
      a.ppo,
      key,
      jh,
      ref_params,
      ref_params,
      reward_fn,
      golds,
      every=a.monitor_every,
      mesh=mesh_lib.make_mesh(config.get('mesh')),
  )
  rows = {k: np.asarray(v) for k, v in metrics.items() if np.ndim(v) == 1}
  if distributed.is_primary():
    with open(os.path.join(out_dir, 'metrics.jsonl'), 'w') as f:
      for i in range(a.ppo.num_updates):
        f.write(json.dumps({k: float(v[i]) for k, v in rows.items()}) + '\n')
  # Every process calls orbax (it coordinates them; process 0 writes the
  # host arrays). StandardCheckpointer saves asynchronously: wait, or a job
  # that ends right after this line may leave no (or half a) checkpoint.
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(
      os.path.abspath(os.path.join(out_dir, 'checkpoint')),
      jax.tree_util.tree_map(np.asarray, params),
      force=True,
  )
  checkpointer.wait_until_finished()
  return params, series


def evaluate(
    config, trained: TrainedAgent
) -> tuple[dict, tuple[list, list[str]]]:
  """Inspector scores of the agent's mean action, the warm start's, the
  expert's and the median of agent.num_random_eval random actions on every
  held-out scene (rendered at config.render.image_size, scored at
  agent.gold_image_size).

  Returns:
    ({scene id: numbers}, (renderings [H, W, 3], titles)): per scene the
    expert's, the agent's and the median random action's rendering.
  """
  a = config.agent
  params, ref_params = trained.params, trained.warm_start_params
  scenes = [
      _build(config, s, config.render.image_size) for s in trained.held_out
  ]
  scores, images, titles = {}, [], []
  for scene in scenes:
    n_vertices = scene.experts.shape[1]
    gold = _gold(scene.with_view(image_size=a.gold_image_size), config)
    jh = jnp.asarray(scene.jh.image[None], jnp.float32)
    agent_action = np.asarray(policy_lib.mode(trained.net, params, jh))[0]
    warm_action = np.asarray(policy_lib.mode(trained.net, ref_params, jh))[0]
    randoms = np.asarray(
        polygon.random_actions(
            jax.random.fold_in(trained.eval_key, len(scores)),
            a.num_random_eval,
            n_vertices,
        )
    )
    s_agent, s_warm = gold(agent_action[None])[0], gold(warm_action[None])[0]
    s_expert = gold(scene.experts[:1])[0]
    s_random = gold(randoms)
    scores[scene.scene_id] = dict(
        agent_score=float(s_agent),
        warm_start_score=float(s_warm),
        expert_score=float(s_expert),
        random_median_score=float(np.median(s_random)),
        agent_relative_to_expert=float(s_agent / max(s_expert, 1e-9)),
        agent_action=agent_action.tolist(),
    )
    j = int(np.argsort(s_random)[len(s_random) // 2])
    for name, act, sc in (
        ('expert', scene.experts[0], s_expert),
        ('agent', agent_action, s_agent),
        ('random (median)', randoms[j], s_random[j]),
    ):
      images.append(np.asarray(scene.render(act))[..., :3])
      titles.append(f'{scene.scene_id}: {name}\ninspector {sc:.2f}')
  return scores, (images, titles)
