"""Job `evaluate`: the paper's Fig. 2-4, numbers it lacks, gradient probing.

Reads the trained reward models of <workdir>/reward (the run each loss's
selection rule picked; trained first with config.train_if_missing) and every
scene of the dataset config, and writes to <workdir>/evaluation (with
several scenes: the held-out pair numbers over all of them there, and the
figures and numbers of each scene in evaluation/<scene_id>/ and under
summary.json's 'scenes', with their means in 'scene_mean'):

  fig2_reward_histograms.png  rewards of 20,000 random actions per loss
  fig3_corner_plots.png       reward of each vertex at every JH pixel, the
                              others at the expert polygon; vertex-4 renders
  fig4_evaluation_tfs.png     12 unseen TFs sorted by reward, with the
                              inspector's score under each
  reliability.png             calibration of p(left > right), held-out pairs
  ties_closer.png             |r_a - r_b| of tied vs untied held-out pairs
  probing_gradients.png       dr/dvertices at the expert + ascent results
  summary.json                every number below, per loss

Numbers per loss: held-out decisive accuracy, log-loss, ECE (10 bins);
tie-aware held-out numbers (tie_metrics: the held-out pairs split into a
validation half that tunes the tie thresholds, and L_C / L_L's Davidson tie
parameter, and a test half that is only scored): three-way and PickScore
accuracy, Davidson tie log-likelihood, "ties are closer" share and AUC,
also for every seed of every loss (heldout_ties_every_seed: min, mean, max);
Spearman / Kendall between reward and the simulated inspector's score over
``eval.num_gold`` unseen random actions (scored at ``eval.gold_image_size``);
sharpness (share of random actions above the mean expert reward, histogram
entropy); reward ascent from 32 starts: best reward, the inspector score of
the found TF relative to the expert's, distance to the corner maps' best
positions; and the image-space gradient through the renderer.

The steps and their order live in rlhf_tf.evaluation.report (each step's
PRNG key split from ``eval.seed`` by purpose). Devices (config.mesh) split
the 20,000 rewards, corner maps and renderings; every process computes,
process 0 alone writes figures and summary.json.
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
