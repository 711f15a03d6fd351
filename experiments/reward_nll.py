"""Reward model with L_L (negative log-likelihood without ties, eq. 5).

  python launch.py --experiment=experiments/reward_nll.py --workdir=/tmp/rm_nll

The same data and settings as experiments/reward_ce.py; ties are dropped from
the loss. Expected: held-out accuracy on decisive pairs >= 0.90.
Args: '' | 'smoke' (tiny scene, 2 epochs, 2 seeds).
"""

from rlhf_tf.jobs import reward


def get_config(arg=None):
  if arg not in (None, '', 'smoke'):
    raise ValueError(f'unknown arg {arg!r}; valid: smoke')
  return reward.experiment_config(('nll',), smoke=arg == 'smoke')
