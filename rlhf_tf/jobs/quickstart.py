"""Job `quickstart`: the whole paper pipeline in one workdir (the README's).

Runs what the jobs `simulate_preferences` (sec. 3 data), `train_reward`
(three losses x seeds) and `evaluate` (Fig. 2-4, calibration, ties, probing)
run, one after the other on the same config, and writes their times to
<workdir>/quickstart_timings.json.
"""

from __future__ import annotations

import json
import os
import time

from rlhf_tf.devices import distributed
from rlhf_tf.evaluation import report
from rlhf_tf.preferences import simulated_votes
from rlhf_tf.reward import from_store


def run(config, workdir: str) -> dict:
  """The whole paper pipeline: simulated preferences, three losses x seeds,
  evaluation and figures, all in ``workdir``."""
  t0 = time.perf_counter()
  timings = {}
  primary = distributed.is_primary()  # several processes: process 0 prints
  simulated = simulated_votes.simulate_dataset(config, workdir)
  if primary:
    print(json.dumps(simulated, indent=2))
  timings['simulate_s'] = time.perf_counter() - t0
  trained = from_store.train_on_store(config, workdir)
  if primary:
    print(
        json.dumps(
            {loss: s['final'] for loss, s in trained['selected'].items()},
            indent=2,
        )
    )
  timings['train_s'] = time.perf_counter() - t0 - timings['simulate_s']
  summary = report.evaluate(config, workdir)
  timings['total_s'] = time.perf_counter() - t0
  if not primary:
    return summary
  with open(os.path.join(workdir, 'quickstart_timings.json'), 'w') as f:
    json.dump({k: round(v, 1) for k, v in timings.items()}, f, indent=2)
  print(
      f'quickstart done in {timings["total_s"]:.0f} s; figures in '
      f'{os.path.join(workdir, "evaluation")}'
  )
  return summary
