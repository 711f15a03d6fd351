"""Reward model with L_C (cross-entropy keeping ties, paper eq. 4).

  python launch.py --experiment=experiments/reward_ce.py --workdir=/tmp/rm_ce

Paper settings on the default phantom scene: 4,000 preferences of the
simulated inspector (made first when the store in the workdir is empty; votes
of real inspectors collected with experiments/collect.py into the same store
are read the same way), 75 epochs, batch 128, Adam lr 1e-3, 3 seeds.
Expected: held-out accuracy on decisive pairs >= 0.90 (reward/summary.json).
Args: '' | 'multiscene' (6 patient phantoms, seeds 0-5, 2,000 pairs each
judged at 64^2 px, 200 random actions per scene, 30 epochs: the reward to
give experiments/propose.py for a scan of your own; the quickstart's sees
one scene) | 'smoke' (simulate.py:smoke's tiny scene, 2 epochs, 2 seeds, a
tiny model). reward_nll.py, quickstart.py, propose.py and agent_ppo.py build
on this file.
"""

from rlhf_tf.jobs import experiment_file
from rlhf_tf.reward import train


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, multiscene=False, smoke=False)
  # The data: simulate.py's scenes, actions, pairs and simulated inspector.
  config = experiment_file.load_config(
      'simulate.py:smoke' if arg.smoke else 'simulate.py', relative_to=__file__
  )
  config.job = 'train_reward'
  config.data_source = ''  # '' = human and simulated | 'human' | 'simulated'
  # A "both bad" answer (stored apart from "about equal"): 'tie' trains on
  # it as a tie (L_C, L_D; L_L drops every tie) | 'drop' leaves it out.
  config.both_bad = 'tie'
  config.simulate_if_empty = True  # an empty store: simulated votes first
  # The reward model (reward/model.py) and its training, paper sec. 3.
  config.reward = train.default_config()
  config.reward.losses = ('ce',)  # L_C, eq. 4
  config.reward.num_seeds = 3
  config.reward.num_epochs = 75
  config.reward.batch_size = 128
  config.reward.learning_rate = 1e-3
  config.reward.held_out_fraction = 0.1  # the paper holds nothing out
  config.reward.selection = 'paper'  # the seed with the highest train loss
  if arg.multiscene:  # many scans: proposals that depend on the scan
    config.scenes = 'phantom:0-5'
    config.render.image_size = 64  # the inspector's criteria are averages
    config.pairs.num = 2000
    config.actions.num_random = 200
    config.reward.num_epochs = 30
  if arg.smoke:
    config.reward.num_seeds = 2
    config.reward.num_epochs = 2
    config.reward.batch_size = 16
    experiment_file.shrink_reward_model(config.reward.model)
  return config
