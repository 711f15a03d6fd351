"""Job `label_protocols`: uniform vs two-stage labels at the same budget.

For each label budget of config.protocol, on the dataset config's first
scene: the uniform protocol (the paper's uniform pairs) and the two-stage
protocol (preferences/two_stage.py), each reward scored by Spearman rho
against the simulated inspector on unseen random actions
(rlhf_tf.evaluation.label_protocols). Writes
<workdir>/label_protocols/{summary.json, learning_curve.png} and prints the
rows.
"""

from __future__ import annotations

import json
import os
import resource
import time

import numpy as np

from rlhf_tf.evaluation import figures_scenes, label_protocols


def run(config, workdir: str) -> dict:
  t0 = time.perf_counter()
  out_dir = os.path.join(workdir, 'label_protocols')
  os.makedirs(out_dir, exist_ok=True)
  scene_id, rows = label_protocols.compare(config, out_dir)
  usage = resource.getrusage(resource.RUSAGE_SELF)
  summary = dict(
      scene_id=scene_id,
      rows=rows,
      seconds=round(time.perf_counter() - t0, 1),
      cpu_seconds=round(usage.ru_utime + usage.ru_stime, 1),
  )
  with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2, default=float)
  figures_scenes.learning_curve_figure(
      rows, os.path.join(out_dir, 'learning_curve.png')
  )
  print(
      json.dumps(
          [
              {
                  k: (np.round(v, 3).tolist() if k.endswith('rho') else v)
                  for k, v in r.items()
              }
              for r in rows
          ],
          indent=1,
          default=float,
      )
  )
  return summary
