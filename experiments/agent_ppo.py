"""PPO agent proposing a TF from the JH, against the learned reward.

  python launch.py --experiment=experiments/agent_ppo.py --workdir=/tmp/agent

Reuses <workdir>/reward (e.g. a quickstart or reward_ce workdir; set
--experiment.reward_workdir=DIR to read another one) or trains the L_C reward
model first. Warm start by behaviour cloning of the experts of phantoms 0-2,
then PPO with a KL penalty to the warm start on the conservative ensemble
reward. Trained on phantoms 0-2, evaluated on phantom 7 (never seen) and
Cranium when fetched: agent.train_scenes and agent.eval_scenes are dataset
scene lists ('phantom:0-2', 'phantom:7,cranium'; a held-out scene that is a
training scene or in the reward's store is refused).
Expected: the agent's mean action reaches >= 90 % of the expert TF's
inspector score on the unseen phantom, far above the median random action
(agent/summary.json), in <= 10 minutes on 2 CPU cores. Measured with the
quickstart's reward (--experiment.reward_workdir=<quickstart workdir>) and
the seeds' rewards standardised (reward/ensemble.py): agent / expert 1.026
on phantom 7 (0.949 vs 0.925; median random 0.545) and 1.181 on Cranium
(0.951 vs 0.805); 2.2 min of CPU time, 6.0 min wall at load ~13.
Arg: '' | 'smoke' (reward_ce.py:smoke's scene and model, 4 PPO updates) |
'multiscene' (issue 13: the reward trained on 6 patient phantoms, seeds 0-5,
2,000 pairs each judged at 64^2 px, 30 epochs; the agent trained on the
dataset's scenes, the same 6 (agent.train_scenes = ''), and evaluated on
agent.eval_scenes = 'phantom:6-7,cranium', which neither saw). Measured at
commit da89ac6 with the seeds' rewards standardised:

  python launch.py --experiment=experiments/agent_ppo.py:multiscene \
      --workdir=/tmp/agent_ms

agent / expert inspector score 1.063 on phantom 6 (0.949 vs 0.893; warm
start 0.879, median random 0.589), 1.027 on phantom 7 (0.950 vs 0.925;
0.912, 0.440), 1.178 on Cranium (0.949 vs 0.805; 0.824, 0.428); 5.8 min of
CPU time, 11.9 min wall at load ~9, 2.1 GB peak RSS. The agent's action is
the same polygon on all three scenes (to 2e-6): it has learnt one good TF
for these tissue classes, not a TF per scan (README, 'How scan-specific').
Builds on reward_ce.py (the data and the reward model it trains).
"""

import ml_collections

from rlhf_tf.agent import ppo, warm_start
from rlhf_tf.data import sample_fetch
from rlhf_tf.jobs import experiment_file


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, smoke=False, multiscene=False)
  config = experiment_file.load_config(
      'reward_ce.py:smoke'
      if arg.smoke
      else 'reward_ce.py:multiscene'
      if arg.multiscene
      else 'reward_ce.py',
      relative_to=__file__,
  )
  config.job = 'train_agent'
  config.reward_workdir = ''  # '' = this workdir (trained here when absent)
  config.agent = ml_collections.ConfigDict()
  a = config.agent
  # Scene lists as the dataset's (e.g. 'phantom:0-5,cranium'); '' = the
  # dataset's own scenes (config.scenes, the reward's when trained here).
  a.train_scenes = 'phantom:0-2'
  # Never seen by the agent or the reward: a phantom, and Cranium when it
  # has been fetched.
  a.eval_scenes = 'phantom:7'
  if not arg.smoke and sample_fetch.cranium_path().is_file():
    a.eval_scenes += ',cranium'
  a.gold_image_size = 64  # the inspector's renderings during monitoring
  a.ensemble = True  # conservative reward over the reward model's seeds
  # ... each seed's rewards z-scored against this many fixed random actions
  # on the same JH (reward/ensemble.py: seeds differ by a free offset).
  a.reference_actions = 256
  a.loss = 'ce'  # which trained reward model
  a.seed = 0
  a.monitor_every = 25  # PPO updates between inspector scores
  a.num_random_eval = 16
  a.warm_start = warm_start.default_config()  # behaviour cloning
  a.ppo = ppo.default_config()  # includes the policy network (ppo.policy)
  if arg.multiscene:  # the reward's scenes (reward_ce.py: phantoms 0-5)
    a.train_scenes = ''
    a.eval_scenes = a.eval_scenes.replace('phantom:7', 'phantom:6-7')
  if arg.smoke:
    a.train_scenes, a.eval_scenes = 'phantom:0', 'phantom:1'
    a.gold_image_size, a.monitor_every, a.num_random_eval = 12, 2, 4
    a.warm_start.num_steps = 20
    a.ppo.num_updates, a.ppo.batch_per_scene = 4, 8
    a.ppo.policy.pool_to, a.ppo.policy.features = 16, (4, 4)
    a.ppo.policy.hidden = 16
    a.reference_actions = 32
  return config
