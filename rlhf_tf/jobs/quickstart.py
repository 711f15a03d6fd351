"""Job `quickstart`: the whole paper pipeline in one workdir (the README's).

Runs the jobs `simulate_preferences` (sec. 3 data), `train_reward` (three
losses x seeds) and `evaluate` (Fig. 2-4, calibration, ties, probing) one after
the other on the same config, and writes their times to
<workdir>/quickstart_timings.json.
"""

from __future__ import annotations

import json
import os
import time

from rlhf_tf.jobs import evaluate as evaluate_job
from rlhf_tf.jobs import reward as reward_job
from rlhf_tf.jobs import simulate as simulate_job


def run(config, workdir: str) -> dict:
  """The whole paper pipeline: simulated preferences, three losses x seeds,
  evaluation and figures, all in ``workdir``."""
  t0 = time.perf_counter()
  timings = {}
  simulate_job.simulate_preferences(config, workdir)
  timings['simulate_s'] = time.perf_counter() - t0
  reward_job.train_reward(config, workdir)
  timings['train_s'] = time.perf_counter() - t0 - timings['simulate_s']
  summary = evaluate_job.evaluate(config, workdir)
  timings['total_s'] = time.perf_counter() - t0
  with open(os.path.join(workdir, 'quickstart_timings.json'), 'w') as f:
    json.dump({k: round(v, 1) for k, v in timings.items()}, f, indent=2)
  print(f'quickstart done in {timings["total_s"]:.0f} s; figures in '
        f'{os.path.join(workdir, "evaluation")}')
  return summary
