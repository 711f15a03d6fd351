"""PPO agent proposing a TF from the JH, against the learned reward.

  python launch.py --experiment=experiments/agent_ppo.py --workdir=/tmp/agent

Reuses <workdir>/reward (e.g. a quickstart or reward_ce workdir; set
--experiment.reward_workdir=DIR to read another one) or trains the L_C reward
model first. Warm start by behaviour cloning of the experts of phantoms 0-2,
then PPO with a KL penalty to the warm start on the conservative ensemble
reward. Evaluated on phantom 7 (never seen) and Cranium when fetched.
Expected: the agent's mean action reaches >= 90 % of the expert TF's
inspector score on the unseen phantom, far above the median random action
(agent/summary.json), in <= 10 minutes on 2 CPU cores.
Arg: '' | 'smoke'.
"""

from rlhf_tf.jobs import agent


def get_config(arg=None):
  if arg not in (None, '', 'smoke'):
    raise ValueError(f'unknown arg {arg!r}; valid: smoke')
  return agent.experiment_config(smoke=arg == 'smoke')
