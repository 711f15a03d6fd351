"""Simulated preferences on the built-in phantom (the paper's sec. 3 data).

  python launch.py --experiment=experiments/simulate.py --workdir=/tmp/sim

Per scene: 10 expert + 50 random + 40 augmented actions, 4,000 of the 4,950
pairs, each judged by the simulated inspector's priority list (see
rlhf_tf/preferences/inspector.py) and stored as 'simulated' votes in
<workdir>/preferences.sqlite with PNG renderings of every action. Expected:
a tie rate between 10 % and 20 % (paper: 613 / 4,000 = 15.3 %; the default
scene gives about 16 %, see rlhf_tf/preferences/inspector.py) and experts
scoring far above the median random action (simulate_summary.json).
Args (comma-separated): smoke (24^3 phantom, 16^2 images, 20 actions, 60
pairs) | build (job build_actions: actions, pairs and renderings only).
reward_ce.py and collect.py build on this file's scenes, actions and pairs.
"""

from rlhf_tf.jobs import experiment_file
from rlhf_tf.preferences import dataset, inspector


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, smoke=False, build=False)
  # The store, scenes (volume, histogram, render view) and devices.
  config = dataset.default_config()
  config.job = 'build_actions' if arg.build else 'simulate_preferences'
  # The action set D of each scene and the pairs shown (paper sec. 3).
  config.actions.num_random = 50
  config.actions.num_augmented = 40
  config.pairs.num = 4000
  # The simulated inspector: priority-list tolerances, optional noise.
  config.inspector = inspector.default_config()
  if arg.smoke:
    config.volume.shape = (24, 24, 24)
    config.histogram.bins = 32
    config.render.image_size = 16
    config.actions.num_random = 6
    config.actions.num_augmented = 4
    config.pairs.num = 60
  return config
