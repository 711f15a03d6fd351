"""Simulated preferences on the built-in phantom (the paper's sec. 3 data).

  python launch.py --experiment=experiments/simulate.py --workdir=/tmp/sim

Per scene: 10 expert + 50 random + 40 augmented actions, 4,000 of the 4,950
pairs, each judged by the simulated inspector's priority list (see
rlhf_tf/preferences/inspector.py) and stored as 'simulated' votes in
<workdir>/preferences.sqlite with PNG renderings of every action. Expected:
a tie rate between 10 % and 20 % (paper: 613 / 4,000 = 15.3 %; the default
scene gives about 16 %, see rlhf_tf/preferences/inspector.py) and experts
scoring far above the median random action (simulate_summary.json).
Args: '' | 'smoke' (24^3 phantom, 16^2 images, 20 actions, 60 pairs) |
'build' (job build_actions: actions, pairs and renderings only).
"""

from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector


def get_config(arg=None):
  config = dataset.dataset_config()
  config.job = 'simulate_preferences'
  config.inspector = inspector.default_config()
  for part in (arg or '').split(','):
    if part == 'smoke':
      dataset.shrink_for_smoke(config)
    elif part == 'build':
      config.job = 'build_actions'
    elif part:
      raise ValueError(f'unknown arg {part!r}; valid: smoke, build')
  return config
