"""Evaluation step on the held-out preference pairs (job `evaluate`).

Held-out accuracy, log-loss and ECE (10 bins) of the selected run of each
loss on train.py's own split (reliability.png), and the tie-aware numbers
(tie_metrics: thresholds and L_C / L_L's Davidson nu tuned on a validation
half, scored on the test half) of the selected runs and of every seed of
every loss (ties_closer.png); over the pairs of every scene of the dataset.
"""

from __future__ import annotations

import os

from absl import logging
import numpy as np

from rlhf_tf.devices import distributed
from rlhf_tf.evaluation import (
    figures_calibration,
    figures_ties,
    metrics,
    tie_metrics,
)
from rlhf_tf.evaluation.report_setup import Setup
from rlhf_tf.preferences import dataset
from rlhf_tf.reward import from_store, predict, train


def heldout_pairs(s: Setup, summary: dict) -> None:
  """Held-out accuracy, log-loss and ECE on train.py's own split, and the
  tie-aware numbers of the selected runs and of every seed of every loss;
  reliability.png and ties_closer.png."""
  logging.info('held-out pairs: accuracy, log-loss, calibration, ties')
  store = dataset.open_store(s.config, s.workdir)
  try:
    scene_ids, data = distributed.on_primary(
        lambda: from_store.dataset_preference_data(store, s.config)
    )
  finally:
    store.close()
  _, held = train.heldout_split(s.config.reward, data)
  if held is None:
    raise ValueError(
        'config.reward.held_out_fraction is 0: no held-out ' 'pairs to evaluate'
    )
  # Pairs grouped by scene; ids = each pair's index in the held-out split.
  ids = np.concatenate(
      [np.nonzero(held.scene == k)[0] for k in range(held.jh.shape[0])]
  )
  target = np.asarray(held.target)[ids]
  bins, delta = {}, {}
  for loss, p in s.params.items():
    summary[loss]['heldout'], bins[loss], delta[loss] = _pair_numbers(
        s, held, p
    )
    if len(scene_ids) > 1:  # Each scene's own held-out pairs.
      scene_of = np.asarray(held.scene)[ids]
      summary[loss]['heldout_by_scene'] = {
          scene_id: metrics.pair_metrics(
              delta[loss][scene_of == k],
              np.zeros(np.sum(scene_of == k)),
              target[scene_of == k],
          )
          for k, scene_id in enumerate(scene_ids)
          if np.any(scene_of == k)
      }
  if s.primary:
    figures_calibration.reliability_diagram(
        bins,
        os.path.join(s.out_dir, 'reliability.png'),
        {loss: summary[loss]['heldout']['ece'] for loss in s.params},
    )
  reward_dir = os.path.join(s.workdir, 'reward')
  ties = _tie_numbers(
      s, delta, target, ids, predict.selected_tie_nus(reward_dir)
  )
  for loss, numbers in ties.items():
    summary[loss]['heldout_ties'] = numbers
  if s.primary:
    _ties_closer_figure(s, delta, target)
  every, every_nu = predict.load_every_run(reward_dir)
  by_run = _tie_numbers(
      s,
      {run: _pair_numbers(s, held, p)[2] for run, p in every.items()},
      target,
      ids,
      every_nu,
  )
  for loss in s.params:
    summary[loss]['heldout_ties_every_seed'] = tie_metrics.seed_spread(
        by_run, loss
    )


def _pair_numbers(s: Setup, held, params):
  """(pair metrics with ECE, reliability bins, r_left - r_right [P]) of one
  run on the held-out pairs, grouped by scene."""
  rl, rr, target = [], [], []
  for k in range(held.jh.shape[0]):
    r = predict.predict_rewards(
        params, s.config.reward, held.jh[k], held.actions[k]
    )
    m = held.scene == k
    rl.append(r[held.left[m]])
    rr.append(r[held.right[m]])
    target.append(held.target[m])
  rl, rr = np.concatenate(rl), np.concatenate(rr)
  numbers, bins = metrics.pair_metrics_and_calibration(
      rl, rr, np.concatenate(target)
  )
  return numbers, bins, rl - rr


def _tie_numbers(s: Setup, delta: dict, target, ids, tie_nus: dict) -> dict:
  """Tie-aware numbers per run (key of ``delta``). Thresholds (and nu for
  L_C / L_L) are tuned on the validation ids only; the ties-closer check
  reads all held-out pairs (it tunes nothing)."""
  ev = s.config.eval
  val_ids, test_ids = tie_metrics.split_validation_test(
      ids, target, float(ev.tie_validation_fraction), int(ev.seed)
  )
  assert not np.intersect1d(val_ids, test_ids).size
  out = {}
  for run, d in delta.items():
    out[run] = tie_metrics.tie_aware_metrics(
        d, target, ids, val_ids, tie_nu=tie_nus.get(run)
    )
    out[run]['ties_closer'] = tie_metrics.ties_closer(d, target)
  return out


def _ties_closer_figure(s: Setup, delta: dict, target) -> None:
  """ties_closer.png, when both kinds of pair are held out."""
  num_ties = int(np.sum(target == 0.5))
  if 0 < num_ties < target.size:
    figures_ties.ties_closer(
        delta, target, os.path.join(s.out_dir, 'ties_closer.png')
    )
  else:
    logging.warning(
        'ties_closer.png not drawn: %d ties of %d held-out pairs',
        num_ties,
        target.size,
    )
