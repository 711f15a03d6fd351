"""Uniform vs two-stage labels at one budget: which trains the better reward.

On one scene (the dataset config's first), for each label budget: the
uniform protocol labels uniform pairs of the paper's action set (10 expert,
50 random, 40 augmented); the two-stage protocol (preferences/two_stage.py)
labels a ``stage1_fraction`` of the budget that way, trains the seeds as
an ensemble, then in ``rounds`` equal rounds adds one new action per
``pairs_per_new_action`` labels of the round (a ``high_fraction`` of them
those the ensemble rates highest, the rest those it disagrees on most, out
of ``num_candidates`` random ones), labels each new action against the
partners it is most disputed with, and refits the ensemble on every label
so far.
Each protocol's final reward (every seed) is scored by Spearman rho against
the simulated inspector over unseen random actions (their scores cached in
gold_<scene>.npz). The job rlhf_tf/jobs/label_protocols.py drives ``compare``
and writes the summary and the learning curve.
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import ml_collections
import numpy as np

from rlhf_tf.data import sources
from rlhf_tf.evaluation import metrics
from rlhf_tf.preferences import actions as actions_lib
from rlhf_tf.preferences import dataset, two_stage
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.render import polygon
from rlhf_tf.reward import data as data_lib
from rlhf_tf.reward import predict, train

_TARGET = {'left': 1.0, 'right': 0.0, 'equal': 0.5}


def _train_ensemble(config, run_dir, jh, vertices, pairs, answers):
  """Trains config.reward (all seeds) on the labels; the seed-stacked
  parameters of its first loss."""
  examples = [
      (0, int(l), int(r), _TARGET[a]) for (l, r), a in zip(pairs, answers)
  ]
  data = data_lib.from_examples([jh], [vertices], examples)
  train.train_and_evaluate(config.reward, run_dir, data)
  loss = config.reward.losses[0]
  return predict.load_stacked_params(run_dir, loss)


def _rewards(config, params, jh, vertices) -> np.ndarray:
  return predict.every_seed_rewards(params, config.reward, jh, vertices)


def _rho(config, params, jh, gold_actions, gold_scores) -> list:
  return [
      metrics.rank_correlations(r, gold_scores)['spearman_rho']
      for r in _rewards(config, params, jh, gold_actions)
  ]


def _gold(scene, icfg, key, num: int, path: str):
  """(unseen random actions [num, n, 2], their inspector scores [num]),
  cached in ``path`` (rendering them is the slow part)."""
  if os.path.exists(path):
    with np.load(path) as f:
      if len(f['scores']) == num:
        return f['actions'], f['scores']
  actions = np.asarray(polygon.random_actions(key, num, scene.experts.shape[1]))
  scores = inspector_lib.score(
      inspector_lib.action_criteria(scene, actions), icfg
  )
  np.savez(path, actions=actions, scores=scores)
  return actions, scores


def _two_stage(config, out_dir, budget, keys, setup, gold) -> dict:
  """The two-stage protocol at one budget: a share of it as uniform pairs
  of D, then ``protocol.rounds`` rounds of new actions, each labelled
  against the partners it is most disputed with, the ensemble refit on all
  labels so far before every round. Returns its row entries."""
  proto = config.protocol
  k_b, k_cand, k_select = keys
  scene, jh, vertices, crit = setup
  icfg = inspector_lib.from_config(config.inspector)
  n = vertices.shape[1]
  first = int(round(float(proto.stage1_fraction) * budget))
  pairs = actions_lib.sample_pairs(k_b, len(vertices), first)
  answers = list(inspector_lib.judge_pairs(None, crit, pairs, icfg))
  params = _train_ensemble(
      config,
      os.path.join(out_dir, f'stage1_{budget}'),
      jh,
      vertices,
      pairs,
      answers,
  )
  # Mean rho after stage 1 and after every round (how each one helped).
  stage_rho = [float(np.mean(_rho(config, params, jh, *gold)))]
  rounds = int(proto.rounds)
  rest = budget - first
  for r in range(rounds):
    # Round 0 draws with the keys of the one-round protocol.
    k_c = jax.random.fold_in(k_cand, budget)
    k_s = jax.random.fold_in(k_select, budget)
    if r:
      k_c, k_s = jax.random.fold_in(k_c, r), jax.random.fold_in(k_s, r)
    labels = rest * (r + 1) // rounds - rest * r // rounds
    num_new = labels // int(proto.pairs_per_new_action)
    num_high = int(round(float(proto.high_fraction) * num_new))
    cands = two_stage.candidate_actions(k_c, proto.num_candidates, n)
    pick = two_stage.new_actions(
        _rewards(config, params, jh, cands), num_high, num_new - num_high
    )
    new_pairs = two_stage.partner_pairs(
        k_s,
        _rewards(config, params, jh, np.concatenate([vertices, cands[pick]])),
        len(vertices) + np.arange(len(pick)),
        int(proto.pairs_per_new_action),
        exclude=[tuple(p) for p in pairs],
        num_partners=int(proto.num_partners),
    )
    vertices = np.concatenate([vertices, cands[pick]])
    crit = np.concatenate(
        [crit, inspector_lib.action_criteria(scene, cands[pick])]
    )
    pairs = np.concatenate([pairs, new_pairs])
    answers += inspector_lib.judge_pairs(None, crit, new_pairs, icfg)
    last = r == rounds - 1
    params = _train_ensemble(
        config,
        os.path.join(
            out_dir, f'two_stage_{budget}' if last else f'round{r + 1}_{budget}'
        ),
        jh,
        vertices,
        pairs,
        answers,
    )
    stage_rho.append(float(np.mean(_rho(config, params, jh, *gold))))
  return dict(
      two_stage_rho=_rho(config, params, jh, *gold),
      two_stage_stage_rho=stage_rho,
      two_stage_actions=int(len(vertices)),
      two_stage_labels=int(len(pairs)),
      two_stage_tie_rate=inspector_lib.tie_rate(answers),
  )


def compare(config, out_dir: str) -> tuple[str, list[dict]]:
  """Both protocols at every budget of config.protocol on the dataset
  config's first scene, the reward runs and the gold cache under out_dir.

  Returns (scene id, one row per budget: labels, <protocol>_rho (Spearman
  rho per seed against the inspector on the gold actions),
  <protocol>_tie_rate, the two-stage protocol's rho after each stage,
  actions and labels, seconds).
  """
  spec = dataset.scene_specs(config)[0]
  volume = sources.load_volume(ml_collections.ConfigDict(spec.volume))
  scene = scenes_lib.build_scene(
      spec.scene_id, volume, config.histogram, config.render
  )
  jh = np.asarray(scene.jh.image, np.float32)
  icfg = inspector_lib.from_config(config.inspector)
  proto = config.protocol
  key = jax.random.key(proto.seed)
  k_gold, k_d, k_pairs, k_cand, k_select = jax.random.split(key, 5)
  gold_actions, gold_scores = _gold(
      scene,
      icfg,
      k_gold,
      int(proto.num_gold),
      os.path.join(out_dir, f'gold_' f'{spec.scene_id}.npz'),
  )
  d = actions_lib.action_set_from_config(k_d, scene.experts, config.actions)
  crit_d = inspector_lib.action_criteria(scene, d.vertices)
  rows = []
  for budget in proto.budgets:
    t_budget = time.perf_counter()
    budget = int(budget)
    k_b = jax.random.fold_in(k_pairs, budget)
    row = dict(labels=budget)
    if 'uniform' in proto.protocols:  # The paper's protocol.
      pairs = actions_lib.sample_pairs(k_b, len(d), budget)
      answers = inspector_lib.judge_pairs(None, crit_d, pairs, icfg)
      params = _train_ensemble(
          config,
          os.path.join(out_dir, f'uniform_{budget}'),
          jh,
          d.vertices,
          pairs,
          answers,
      )
      row.update(
          uniform_rho=_rho(config, params, jh, gold_actions, gold_scores),
          uniform_tie_rate=inspector_lib.tie_rate(answers),
      )
    if 'two_stage' in proto.protocols:
      row.update(
          _two_stage(
              config,
              out_dir,
              budget,
              (k_b, k_cand, k_select),
              (scene, jh, d.vertices, crit_d),
              (gold_actions, gold_scores),
          )
      )
    row['seconds'] = round(time.perf_counter() - t_budget, 1)
    rows.append(row)
    logging.info(
        '%d labels: uniform rho %s, two-stage rho %s',
        budget,
        np.round(row.get('uniform_rho', []), 3),
        np.round(row.get('two_stage_rho', []), 3),
    )
  return spec.scene_id, rows
