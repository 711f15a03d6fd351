"""Job `train_agent`: a PPO agent that proposes a TF from the JH (sec. 2, 6).

Trains the agent on its training scenes against the reward model and
evaluates it on held-out scenes (rlhf_tf.agent.training_run: the reward
reused from <reward_workdir>/reward or trained first, a behaviour-cloning
warm start, PPO with a KL penalty to it, optionally on the conservative
ensemble reward; the scene lists: rlhf_tf.agent.scene_split). Writes to
<workdir>/agent: metrics.jsonl (per PPO update), overoptimisation.png
(inspector score and proxy reward vs sqrt(KL), Gao et al. 2022),
agent_tfs.png (per evaluation scene: expert, agent, a random action),
checkpoint/ (orbax, policy params) and summary.json (the training scene
ids; per held-out scene the inspector scores of the agent's mean action,
the expert and the median random action).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from rlhf_tf.agent import training_run
from rlhf_tf.devices import distributed
from rlhf_tf.evaluation import figures, figures_agent


def train_agent(config, workdir: str) -> dict:
  t0 = time.perf_counter()
  out_dir = os.path.join(workdir, 'agent')
  primary = distributed.is_primary()  # several processes: process 0 writes
  if primary:
    os.makedirs(out_dir, exist_ok=True)
  trained = training_run.train(config, workdir, out_dir)
  if primary:
    figures_agent.overoptimisation(
        {k: np.asarray(v) for k, v in trained.series.items()},
        os.path.join(out_dir, 'overoptimisation.png'),
    )
  scores, (images, titles) = training_run.evaluate(config, trained)
  if primary:
    figures.overview(
        images, titles, os.path.join(out_dir, 'agent_tfs.png'), ncols=3
    )
  summary = dict(
      train_scenes=trained.train_scene_ids,
      bc_final_mode_mse=float(trained.bc['mode_mse'][-1]),
      monitor={k: np.asarray(v).tolist() for k, v in trained.series.items()},
      scenes=scores,
  )
  summary['seconds'] = round(time.perf_counter() - t0, 1)
  if primary:
    with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    print(json.dumps(summary['scenes'], indent=2))
  return summary
