"""Job `train_agent`: a PPO agent that proposes a TF from the JH (sec. 2, 6).

Completes the RLHF pipeline of Ziegler et al.: (1) a reward model from
preferences (reused from <reward_workdir>/reward, or trained first on the
simulated inspector's votes), (2) a supervised warm start of the policy by
behaviour cloning of the expert actions of the training scenes, (3) PPO
against the reward model with a KL penalty to the warm-start policy
(rlhf_tf.agent.ppo), optionally on the conservative ensemble reward
mean - k * std over the reward model's seeds, each seed's rewards z-scored
against a fixed reference set of random actions (rlhf_tf.reward.ensemble).

The scenes are dataset scene lists (preferences/dataset.py's syntax, e.g.
'phantom:0-5' or 'phantom:6-7,cranium'): the agent trains on
``agent.train_scenes`` ('' = the dataset's own, ``config.scenes``, which the
reward trains on when it is trained here) and is evaluated on
``agent.eval_scenes``, which must share no scene with its training scenes
nor with the reward's preference store (``scene_lists``,
``check_reward_scenes``). Writes to <workdir>/agent: metrics.jsonl (per PPO
update), overoptimisation.png (inspector score and proxy reward vs
sqrt(KL), Gao et al. 2022), agent_tfs.png (per evaluation scene: expert,
agent, a random action), checkpoint/ (orbax, policy params) and
summary.json (the training scene ids; per held-out scene the inspector
scores of the agent's mean action, the expert and the median random
action).
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from rlhf_tf.agent import policy as policy_lib
from rlhf_tf.agent import ppo, warm_start
from rlhf_tf.data import sources
from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.evaluation import figures, figures_agent
from rlhf_tf.input_error import ConfigError
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.preferences import store as store_lib
from rlhf_tf.render import polygon
from rlhf_tf.reward import checkpointing, from_store
from rlhf_tf.reward import ensemble as ensemble_lib
from rlhf_tf.reward import model as model_lib


def _reward_fn(config, reward_dir: str):
  """jittable (jh [B, B], actions [N, n, 2]) -> [M, N] (ensemble) or [N].

  The ensemble's rewards are per-seed z-scores against a fixed set of
  agent.reference_actions random actions on the same JH
  (rlhf_tf.reward.ensemble): raw rewards of different seeds differ by an
  offset Bradley-Terry leaves free, which mean - k std must not see.
  """
  loss, a = config.agent.loss, config.agent
  stacked = checkpointing.load_params(
      os.path.join(reward_dir, loss, 'checkpoints')
  )
  if not a.ensemble:
    with open(os.path.join(reward_dir, 'summary.json')) as f:
      seed = json.load(f)['selected'][loss]['seed']
    stacked = jax.tree_util.tree_map(lambda x: x[seed : seed + 1], stacked)
  stacked = jax.tree_util.tree_map(jnp.asarray, stacked)
  model = model_lib.model_from_config(config.reward.model)
  if a.ensemble:
    return ensemble_lib.standardised_ensemble_fn(
        model,
        stacked,
        ensemble_lib.reference_actions(model.n_vertices, a.reference_actions),
    )

  def one(params, jh, actions):
    return model_lib.score(
        model, params, model_lib.encode(model, params, jh), actions
    )

  def reward_fn(jh, actions):
    return jax.vmap(one, in_axes=(0, None, None))(stacked, jh, actions)[0]

  return reward_fn


# Config keys the scene lists replaced: refused, so an old config that sets
# them does not silently train or evaluate on other scenes.
_GONE_KEYS = ('train_seeds', 'eval_seeds', 'eval_cranium')


def _specs(config, scenes: str) -> list[dataset.SceneSpec]:
  """The scene specs of a dataset scene list ('' = config.scenes')."""
  if not scenes:
    return dataset.scene_specs(config)
  with config.unlocked():
    listed = config.copy_and_resolve_references()
    listed.scenes = scenes
  return dataset.scene_specs(listed)


def scene_lists(config) -> tuple[list, list]:
  """(training, held-out) scene specs of the agent.

  Raises:
    ConfigError: naming a replaced key (agent.train_seeds, ...), an empty
      agent.eval_scenes, or a held-out scene that is also a training one.
  """
  a = config.agent
  for key in _GONE_KEYS:
    if key in a:
      raise ConfigError(
          f'agent.{key} is no longer read: name the scenes in '
          "agent.train_scenes / agent.eval_scenes (e.g. 'phantom:0-5' and "
          "'phantom:6-7,cranium')"
      )
  train = _specs(config, a.train_scenes)
  if not a.eval_scenes:
    raise ConfigError(
        "agent.eval_scenes is empty: name held-out scenes, e.g. 'phantom:7'"
    )
  held_out = _specs(config, a.eval_scenes)
  both = sorted({s.scene_id for s in train} & {s.scene_id for s in held_out})
  if both:
    raise ConfigError(
        f'agent.eval_scenes: {", ".join(both)} also in the training scenes '
        f'(agent.train_scenes={a.train_scenes!r}, scenes='
        f'{config.get("scenes", "")!r}); held-out scenes must stay unseen'
    )
  return train, held_out


def reward_scene_ids(store_path: str) -> list[str]:
  """Scene ids in the reward's preference store (every scene the reward
  may have trained on); [] without a store."""
  if not os.path.isfile(store_path):
    return []
  store = store_lib.PreferenceStore(store_path)
  try:
    return [s['scene_id'] for s in store.scenes()]
  finally:
    store.close()


def check_reward_scenes(store_path: str, held_out) -> None:
  """Refuses held-out scenes that the reward's preference store holds."""
  stored = distributed.on_primary(lambda: reward_scene_ids(store_path))
  seen = sorted(set(stored) & {s.scene_id for s in held_out})
  if seen:
    raise ConfigError(
        f'agent.eval_scenes: {", ".join(seen)} in the reward\'s store '
        f'{store_path}; held-out scenes must stay unseen by the reward too'
    )


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


def train_agent(config, workdir: str) -> dict:
  t0 = time.perf_counter()
  a = config.agent
  out_dir = os.path.join(workdir, 'agent')
  primary = distributed.is_primary()  # several processes: process 0 writes
  if primary:
    os.makedirs(out_dir, exist_ok=True)
  train_specs, held_out = scene_lists(config)
  reward_dir = _ensure_reward(config, workdir)
  check_reward_scenes(
      dataset.store_path(config, os.path.dirname(reward_dir)), held_out
  )
  reward_fn = _reward_fn(config, reward_dir)
  train = [_build(config, s, a.gold_image_size) for s in train_specs]
  logging.info(
      'training scenes: %s; held out: %s',
      [s.scene_id for s in train],
      [s.scene_id for s in held_out],
  )
  jh = np.stack([s.jh.image for s in train]).astype(np.float32)
  experts = np.stack([s.experts for s in train])
  net = policy_lib.net_from_config(a.ppo.policy)
  k_init, k_ppo, k_eval = jax.random.split(jax.random.key(a.seed), 3)
  ref_params, bc = warm_start_policy(config, net, k_init, jh, experts)
  params, series = train_ppo(
      config,
      k_ppo,
      jh,
      ref_params,
      reward_fn,
      [_gold(s, config) for s in train],
      out_dir,
  )
  summary = dict(
      train_scenes=[s.scene_id for s in train],
      bc_final_mode_mse=float(bc['mode_mse'][-1]),
      monitor={k: np.asarray(v).tolist() for k, v in series.items()},
      scenes=evaluate_policy(
          config,
          net,
          (params, ref_params),
          k_eval,
          [_build(config, s, config.render.image_size) for s in held_out],
          out_dir,
      ),
  )
  summary['seconds'] = round(time.perf_counter() - t0, 1)
  if primary:
    with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    print(json.dumps(summary['scenes'], indent=2))
  return summary


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
  monitored every agent.monitor_every updates; writes metrics.jsonl,
  overoptimisation.png and checkpoint/. Returns (params, monitor series)."""
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
    figures_agent.overoptimisation(
        {k: np.asarray(v) for k, v in series.items()},
        os.path.join(out_dir, 'overoptimisation.png'),
    )
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


def evaluate_policy(config, net, policies, key, scenes, out_dir: str) -> dict:
  """Inspector scores of the agent's mean action, the warm start's, the
  expert's and the median of agent.num_random_eval random actions on every
  held-out scene; agent_tfs.png.

  Args:
    policies: (the agent's params, the warm start's params).
    scenes: the held-out Scenes.

  Returns:
    {scene id: numbers}.
  """
  a = config.agent
  params, ref_params = policies
  scores, images, titles = {}, [], []
  for scene in scenes:
    n_vertices = scene.experts.shape[1]
    gold = _gold(scene.with_view(image_size=a.gold_image_size), config)
    jh = jnp.asarray(scene.jh.image[None], jnp.float32)
    agent_action = np.asarray(policy_lib.mode(net, params, jh))[0]
    warm_action = np.asarray(policy_lib.mode(net, ref_params, jh))[0]
    randoms = np.asarray(
        polygon.random_actions(
            jax.random.fold_in(key, len(scores)), a.num_random_eval, n_vertices
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
  if distributed.is_primary():
    figures.overview(
        images, titles, os.path.join(out_dir, 'agent_tfs.png'), ncols=3
    )
  return scores
