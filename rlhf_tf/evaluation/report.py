"""The reward evaluation: the paper's Fig. 2-4, numbers it lacks, probing.

Reads the trained reward models of <workdir>/reward (the run each loss's
selection rule picked) and every
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

``evaluate`` runs one named step per figure or group of numbers, in this
order (report_heldout.py: held-out pairs; report_unseen.py: per scene);
each step's PRNG key is split from ``eval.seed`` by purpose. Devices
(config.mesh) split the 20,000 rewards, corner maps and renderings; every
process computes, process 0 alone writes figures and summary.json.
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
import jax
import numpy as np

from rlhf_tf.evaluation import report_heldout, report_setup, report_unseen
from rlhf_tf.preferences import dataset

# Per scene, the headline numbers averaged into summary['scene_mean'].
_SCENE_HEADLINES = {
    'spearman_rho': ('rank_correlation', 'spearman_rho'),
    'share_above_expert': ('sharpness', 'share_above_expert_mean'),
    'probing_relative': ('probing', 'found_relative_to_expert'),
}


def evaluate(config, workdir: str) -> dict:
  """Every step in order on the trained reward of <workdir>/reward; writes
  <workdir>/evaluation (process 0) and returns the summary."""
  t0 = time.perf_counter()
  s = report_setup.make_setup(config, workdir)
  keys = jax.random.split(jax.random.key(config.eval.seed), 4)
  summary = {loss: {} for loss in s.params}
  report_heldout.heldout_pairs(s, summary)
  specs = dataset.scene_specs(config)
  if len(specs) == 1:
    report_unseen.scene_steps(
        report_setup.scene_view(s, specs[0], s.out_dir), keys, summary
    )
  else:
    # Every scene gets the same keys (the same random actions, a
    # comparison across scenes); the figures go to its own folder.
    summary['scenes'] = {}
    for spec in specs:
      logging.info('evaluation of scene %s', spec.scene_id)
      numbers = {loss: {} for loss in s.params}
      report_unseen.scene_steps(
          report_setup.scene_view(
              s, spec, os.path.join(s.out_dir, spec.scene_id)
          ),
          keys,
          numbers,
      )
      summary['scenes'][spec.scene_id] = numbers
    summary['scene_mean'] = _scene_means(summary['scenes'], s.params)
  summary['seconds'] = round(time.perf_counter() - t0, 1)
  if s.primary:
    write_summary(s, summary)
  return summary


def _scene_means(by_scene: dict, losses) -> dict:
  """{loss: {headline: mean over the scenes}}."""
  return {
      loss: {
          name: float(
              np.mean([numbers[loss][a][b] for numbers in by_scene.values()])
          )
          for name, (a, b) in _SCENE_HEADLINES.items()
      }
      for loss in losses
  }


def write_summary(s: report_setup.Setup, summary: dict) -> None:
  """<workdir>/evaluation/summary.json, and the headline numbers per loss
  (per scene, with several) on stdout."""
  with open(os.path.join(s.workdir, 'evaluation', 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2, default=float)
  heldout = {
      loss: dict(
          heldout_accuracy=summary[loss]['heldout']['accuracy'],
          three_way_accuracy=summary[loss]['heldout_ties'][
              'three_way_accuracy'
          ],
          ties_below_untied_median=summary[loss]['heldout_ties']['ties_closer'][
              'share_below_median'
          ],
          ece=summary[loss]['heldout']['ece'],
      )
      for loss in s.params
  }

  def per_scene(numbers):
    return {
        loss: dict(
            spearman=numbers[loss]['rank_correlation']['spearman_rho'],
            share_above_expert=numbers[loss]['sharpness'][
                'share_above_expert_mean'
            ],
            probing_relative=numbers[loss]['probing'][
                'found_relative_to_expert'
            ],
        )
        for loss in s.params
    }

  if 'scenes' not in summary:
    scene = per_scene(summary)
    print(
        json.dumps(
            {loss: {**heldout[loss], **scene[loss]} for loss in s.params},
            indent=2,
            default=float,
        )
    )
    return
  print(
      json.dumps(
          dict(
              heldout=heldout,
              scene_mean=summary['scene_mean'],
              scenes={k: per_scene(v) for k, v in summary['scenes'].items()},
          ),
          indent=2,
          default=float,
      )
  )
