"""Reward model with L_D (Bradley-Terry with ties, Davidson 1970).

  python launch.py --experiment=experiments/reward_davidson.py \
      --workdir=/tmp/rm_davidson

The same data and settings as experiments/reward_ce.py; ties are modelled as
their own outcome, P(tie) = nu / (2 cosh((r_l - r_r) / 2) + nu), with the tie
parameter nu = softplus(raw) learned with each run (rlhf_tf/reward/losses.py).
Expected: held-out accuracy on decisive pairs >= 0.90, and the learned
tie_prob_at_equal = nu / (2 + nu) above the data's tie rate (ties happen at
near-equal rewards) in reward/summary.json.
Args: '' | 'smoke' (reward_ce.py:smoke).
"""

from rlhf_tf.jobs import experiment_file


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, smoke=False)
  config = experiment_file.load_config(
      'reward_ce.py:smoke' if arg.smoke else 'reward_ce.py',
      relative_to=__file__,
  )
  config.reward.losses = ('davidson',)  # ties as their own outcome
  return config
