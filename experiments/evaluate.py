"""Evaluate trained reward models (Fig. 2-4, calibration, probing).

  python launch.py --experiment=experiments/evaluate.py --workdir=DIR

DIR must hold reward/ from experiments/reward_ce.py, reward_nll.py or the
quickstart (same dataset config), and preferences.sqlite. Writes
DIR/evaluation/*.png and summary.json (see rlhf_tf/evaluation/report.py).
The config is the quickstart's (experiments/quickstart.py) with the job
'evaluate'. With train_if_missing (set by 'smoke'), a workdir without a
reward model gets one first (simulated votes, train_reward), so that the
smoke run stands alone.
Arg: '' | 'smoke' (quickstart.py:smoke, trains its tiny model first).
"""

from rlhf_tf.jobs import experiment_file


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, smoke=False)
  config = experiment_file.load_config(
      'quickstart.py:smoke' if arg.smoke else 'quickstart.py',
      relative_to=__file__,
  )
  config.job = 'evaluate'
  config.train_if_missing = False  # no <workdir>/reward: train it first
  if arg.smoke:
    config.train_if_missing = True
  return config
