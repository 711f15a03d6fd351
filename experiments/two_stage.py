"""Fewer labels for the same reward: uniform vs two-stage labels (issue 13).

  python launch.py --experiment=experiments/two_stage.py \
      --workdir=workdir/two_stage

One scene (the 128^3 phantom of seed 0), inspector at 64^2 px. Budgets of
500, 1,000, 2,000 and 4,000 labels; per budget the uniform protocol (uniform
pairs of the paper's D: 10 expert, 50 random, 40 augmented) against the
two-stage protocol (half the budget uniform; then 50 candidate actions the
3-seed ensemble rates highest and 150 it disagrees on most, out of 5,000
random ones, and the pairs it disagrees on most); L_C, 75 epochs, 3 seeds.
Spearman rho of each seed's reward vs the inspector over 2,000 unseen random
actions: label_protocols/summary.json and learning_curve.png.
Result (mean of 3 seeds; uniform -> two-stage): 500 labels 0.56 -> 0.69,
1,000 0.62 -> 0.77, 2,000 0.62 -> 0.78, 4,000 0.62 -> 0.81 -- uniform pairs
plateau at ~0.6, the two-stage labels gain 0.13-0.20 at every budget but do
not reach the issue's 0.9 at 4,000. 35 min wall on a shared, heavily loaded
2-core machine (summary.json also records the CPU seconds).
Args: '' | 'smoke' (tiny, seconds). Builds on simulate.py.
"""

import ml_collections

from rlhf_tf.jobs import experiment_file
from rlhf_tf.reward import train


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, smoke=False)
  config = experiment_file.load_config(
      'simulate.py:smoke' if arg.smoke else 'simulate.py',
      relative_to=__file__)
  config.job = 'label_protocols'
  config.render.image_size = 64
  config.reward = train.default_config()
  config.reward.losses = ('ce',)
  config.reward.held_out_fraction = 0.0  # Every label trains.
  config.reward.checkpoint_every_epochs = 75
  # Chosen on a validation scene (phantom seed 1; the test scene is seed 0),
  # 4,000 labels, mean rho of 3 seeds: new actions labelled 4 / 2 / 1 times
  # 0.83 / 0.86 / 0.88; stage 1 at 1/4 of the budget instead of 1/2, 0.89;
  # 20,000 candidates instead of 5,000 (more concentrated) 0.83.
  config.protocol = ml_collections.ConfigDict(dict(
      seed=0, budgets=(500, 1000, 2000, 4000), num_gold=2000,
      protocols=('uniform', 'two_stage'), stage1_fraction=0.25,
      num_candidates=5000, pairs_per_new_action=1, high_fraction=0.25,
      num_partners=64))
  if arg.smoke:
    config.render.image_size = 16
    config.reward.num_seeds = 2
    config.reward.num_epochs = 2
    config.reward.batch_size = 16
    experiment_file.shrink_reward_model(config.reward.model)
    config.reward.checkpoint_every_epochs = 2
    config.protocol.update(dict(budgets=(20, 40), num_gold=16,
                                num_candidates=30, num_partners=8))
  return config
