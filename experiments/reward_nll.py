"""Reward model with L_L (negative log-likelihood without ties, eq. 5).

  python launch.py --experiment=experiments/reward_nll.py --workdir=/tmp/rm_nll

The same data and settings as experiments/reward_ce.py; ties are dropped from
the loss. Expected: held-out accuracy on decisive pairs >= 0.90.
Args: '' | 'smoke' (reward_ce.py:smoke).
"""

from rlhf_tf.jobs import experiment_file


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, smoke=False)
  config = experiment_file.load_config(
      'reward_ce.py:smoke' if arg.smoke else 'reward_ce.py',
      relative_to=__file__,
  )
  config.reward.losses = ('nll',)  # L_L, eq. 5: ties dropped
  return config
