"""Reward model with L_C (cross-entropy keeping ties, paper eq. 4).

  python launch.py --experiment=experiments/reward_ce.py --workdir=/tmp/rm_ce

Paper settings on the default phantom scene: 4,000 preferences of the
simulated inspector (made first when the store in the workdir is empty; votes
of real inspectors collected with experiments/collect.py into the same store
are read the same way), 75 epochs, batch 128, Adam lr 1e-3, 3 seeds.
Expected: held-out accuracy on decisive pairs >= 0.90 (reward/summary.json).
Args: '' | 'smoke' (tiny scene, 2 epochs, 2 seeds).
"""

from rlhf_tf.jobs import reward


def get_config(arg=None):
  if arg not in (None, '', 'smoke'):
    raise ValueError(f'unknown arg {arg!r}; valid: smoke')
  return reward.experiment_config(('ce',), smoke=arg == 'smoke')
