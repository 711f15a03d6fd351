"""Job `evaluate`: the paper's Fig. 2-4, numbers it lacks, gradient probing.

Reads the trained reward models of <workdir>/reward (the run each loss's
selection rule picked; trained first with config.train_if_missing) and every
scene of the dataset config, and writes to <workdir>/evaluation the figures
and numbers that rlhf_tf.evaluation.report lists, in the steps and order it
runs them.
"""

from __future__ import annotations

import os

from absl import logging

from rlhf_tf.evaluation import report
from rlhf_tf.reward import from_store


def evaluate(config, workdir: str) -> dict:
  """Evaluates the trained reward of <workdir>/reward (trained here first
  when missing and config.train_if_missing)."""
  reward_dir = os.path.join(workdir, 'reward')
  if not os.path.exists(os.path.join(reward_dir, 'summary.json')):
    # Only experiments/evaluate.py sets train_if_missing (':smoke' does).
    if not config.get('train_if_missing', False):
      raise FileNotFoundError(
          f'no trained reward model in {reward_dir}: run '
          f'experiments/reward_ce.py or the quickstart with this workdir '
          f'first, or set --experiment.train_if_missing=True'
      )
    logging.info('no reward model in %s: training one first', reward_dir)
    from_store.train_on_store(config, workdir)
  return report.evaluate(config, workdir)
