"""Job `multiscene`: leave-one-scene-out evaluation of the reward.

Every fold trains a reward on all scenes but one and measures it on the
scene it never saw (rlhf_tf.evaluation.scene_holdout_run, which writes
<workdir>/multiscene: summary.json, table.md, held_out.png, fold_<scene>/).
Prints the table and the means.
"""

from __future__ import annotations

import json

from rlhf_tf.evaluation import scene_holdout_run


def run(config, workdir: str) -> dict:
  summary = scene_holdout_run.run_folds(config, workdir)
  print(scene_holdout_run.table(summary['folds']))
  print(
      json.dumps(
          dict(
              phantom_mean=summary['phantom_mean'],
              other_scenes=summary['other_scenes'],
              seconds=summary['seconds'],
          ),
          indent=2,
      )
  )
  return summary
