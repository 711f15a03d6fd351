"""Evaluate trained reward models (Fig. 2-4, calibration, probing).

  python launch.py --experiment=experiments/evaluate.py --workdir=DIR

DIR must hold reward/ from experiments/reward_ce.py, reward_nll.py or the
quickstart (same dataset config), and preferences.sqlite. Writes
DIR/evaluation/*.png and summary.json (see rlhf_tf/jobs/evaluate.py).
Arg: '' | 'smoke' (trains a tiny model first so that it runs on its own).
"""

from rlhf_tf.jobs import quickstart


def get_config(arg=None):
  if arg not in (None, '', 'smoke'):
    raise ValueError(f'unknown arg {arg!r}; valid: smoke')
  config = quickstart.experiment_config(smoke=arg == 'smoke')
  config.job = 'quickstart' if arg == 'smoke' else 'evaluate'
  return config
