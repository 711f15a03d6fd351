"""Leave-one-scene-out evaluation of the reward: the steps of the job
`multiscene` (experiments/multiscene.py; issue 13).

For every scene of the dataset config (phantoms that differ like patients,
Cranium, user DICOM series): the simulated inspector's votes. Then for
every fold (scene_holdout.folds: one per ``held_out`` scene, default all;
training on ``train_pool``, default all, minus the held-out scene) a
reward model is trained on the other scenes' votes only and measured on
the held-out scene: decisive-pair accuracy, Spearman rho vs the inspector
over ``eval.num_gold`` unseen random actions (gold scores, rendered for
held-out scenes only), reward ascent vs the expert. Folds that train on
the same scenes (held-out scenes outside ``train_pool``: validation) share
one reward, trained once (scene_holdout.reward_folds).
``run_folds(config, workdir)`` writes to <workdir>/multiscene:
summary.json, table.md, held_out.png, and each fold's reward runs under
fold_<scene>/, and returns the summary.
"""

from __future__ import annotations

import json
import os
import resource
import time

from absl import logging
import jax
import numpy as np

from rlhf_tf.evaluation import figures_scenes, scene_holdout
from rlhf_tf.preferences import dataset, simulated_votes
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.reward import from_store, predict, train


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _criteria_path(out_dir: str, scene_id: str) -> str:
  return os.path.join(out_dir, f'criteria_{scene_id}.npy')


def _scenes_with_votes(config, store, out_dir):
  """SceneData of every scene, simulating its votes when it has none (the
  criteria of its actions kept in criteria_<scene>.npy)."""
  out = {}
  for spec in dataset.scene_specs(config):
    data = dataset.ensure_scene(store, spec, config)
    if not store.effective_votes(
        scene_id=spec.scene_id,
        source='simulated',
        inspector=config.inspector.name,
    ):
      key = jax.random.fold_in(
          jax.random.key(config.inspector.seed),
          dataset.scene_hash(spec.scene_id),
      )
      crit, answers = simulated_votes.judge_scene(
          data, store, config, key, progress=False
      )
      np.save(_criteria_path(out_dir, spec.scene_id), crit)
      logging.info(
          'scene %s: %d votes, tie rate %.3f',
          spec.scene_id,
          len(answers),
          inspector_lib.tie_rate(answers),
      )
    out[spec.scene_id] = data
  return out


def _scene_ids(config, text: str, scenes) -> list:
  """Scene ids of a comma-separated list whose entries are scene ids or
  ``config.scenes`` entries ('phantom:0-7,cranium'); '' -> []."""
  ids = []
  for entry in (e.strip() for e in str(text).split(',')):
    if not entry:
      continue
    if entry in scenes:
      ids.append(entry)
      continue
    one = config.copy_and_resolve_references()
    one.scenes = entry
    ids.extend(s.scene_id for s in dataset.scene_specs(one))
  return ids


def _gold(config, scene):
  """(actions -> inspector scores) at eval.gold_image_size."""
  size = int(config.eval.gold_image_size)
  gold_scene = (
      scene
      if size == int(config.render.image_size)
      else scene.with_view(image_size=size)
  )
  return lambda a: inspector_lib.score_actions(gold_scene, a, config.inspector)


def _gold_scores(config, scenes, out_dir):
  """Per scene: (unseen random actions, their scores, expert score),
  cached in gold_<scene>.npz (the renderings are the slow part)."""
  key = jax.random.key(config.eval.seed)
  out = {}
  for scene_id, data in scenes.items():
    path = os.path.join(out_dir, f'gold_{scene_id}.npz')
    if os.path.exists(path):
      with np.load(path) as f:
        out[scene_id] = (f['actions'], f['scores'], float(f['expert']))
      continue
    experts = data.scene.experts
    actions = scene_holdout.gold_actions(
        key,
        dataset.scene_hash(scene_id),
        config.eval.num_gold,
        experts.shape[1],
    )
    gold = _gold(config, data.scene)
    scores = gold(actions)
    expert = float(gold(experts[:1])[0])
    np.savez(path, actions=actions, scores=scores, expert=expert)
    out[scene_id] = (actions, scores, expert)
  return out


def _train_fold(config, store, scenes, fold, fold_dir):
  """Trains on the fold's training scenes only; the parameters of every
  seed (leading axis = seed), the reward being their mean standardised
  reward (scene_holdout.held_out_numbers)."""
  if fold.held_out in fold.train_ids:  # Never: Fold checks it too.
    raise AssertionError(f'{fold.held_out} would reach training')
  jhs = [np.asarray(scenes[s].scene.jh.image) for s in fold.train_ids]
  data = from_store.preference_data(
      store, list(fold.train_ids), jhs, source='simulated'
  )
  assert data.jh.shape[0] == len(fold.train_ids)
  train.train_and_evaluate(config.reward, fold_dir, data)
  return predict.load_stacked_params(fold_dir, config.reward.losses[0])


def _criteria(out_dir, data):
  """[A, 5] criteria of a scene's labelled actions (cached)."""
  path = _criteria_path(out_dir, data.scene.scene_id)
  if not os.path.exists(path):
    np.save(path, inspector_lib.action_criteria(data.scene, data.vertices))
  return np.load(path)


def _held_out_pairs(store, scene_id, jh):
  """(actions, pairs [P, 2], target [P]) of a scene's simulated votes."""
  d = from_store.preference_data(store, [scene_id], [jh], source='simulated')
  return (
      np.asarray(d.actions[0]),
      np.stack([np.asarray(d.left), np.asarray(d.right)], axis=-1),
      np.asarray(d.target),
  )


def table(rows) -> str:
  """Markdown table of the folds (summary.json 'folds')."""
  lines = [
      '| held-out scene | trained on | decisive accuracy | Spearman ρ | '
      'ascent / expert |',
      '| --- | --- | --- | --- | --- |',
  ]
  for r in rows:
    lines.append(
        f'| {r["scene_id"]} | {r["train_scenes"]} scenes | '
        f'{r["decisive_accuracy"]:.3f} | {r["spearman_rho"]:.3f} | '
        f'{r["ascent_relative"]:.2f} |'
    )
  return '\n'.join(lines)


def _means(rows) -> dict:
  keys = ('decisive_accuracy', 'spearman_rho', 'ascent_relative')
  return {k: float(np.mean([r[k] for r in rows])) for k in keys} if rows else {}


def run_folds(config, workdir: str) -> dict:
  """The folds of ``config`` (module docstring); returns summary.json."""
  t0 = time.perf_counter()
  out_dir = os.path.join(workdir, 'multiscene')
  os.makedirs(out_dir, exist_ok=True)
  store = dataset.open_store(config, workdir)
  scenes = _scenes_with_votes(config, store, out_dir)
  t_votes, cpu_votes = time.perf_counter(), _cpu_seconds()
  fold_list = scene_holdout.folds(
      list(scenes),
      _scene_ids(config, config.held_out, scenes),
      _scene_ids(config, config.train_pool, scenes),
  )
  # Gold scores only where they are read: the held-out scenes.
  gold = _gold_scores(
      config, {f.held_out: scenes[f.held_out] for f in fold_list}, out_dir
  )
  t_gold, cpu_gold = time.perf_counter(), _cpu_seconds()
  rows = []
  key = jax.random.key(config.eval.seed)
  # Folds with the same training scenes share the reward of the first.
  reward_of, params_of = scene_holdout.reward_folds(fold_list), {}
  for fold in fold_list:
    t_fold, cpu_fold = time.perf_counter(), _cpu_seconds()
    logging.info(
        'fold: hold out %s, train on %s', fold.held_out, fold.train_ids
    )
    owner = reward_of[fold.held_out]
    if owner not in params_of:
      params_of[owner] = _train_fold(
          config,
          store,
          scenes,
          fold,
          os.path.join(out_dir, f'fold_{owner}'),
      )
    params = params_of[owner]
    cpu_train = _cpu_seconds() - cpu_fold
    held = scenes[fold.held_out]
    jh = np.asarray(held.scene.jh.image)
    actions, pairs, target = _held_out_pairs(store, fold.held_out, jh)
    gold_actions, gold_scores, expert_score = gold[fold.held_out]
    numbers = scene_holdout.held_out_numbers(
        params,
        config.reward,
        jh,
        actions,
        pairs,
        target,
        gold_actions,
        gold_scores,
        held.scene.experts[0],
        expert_score,
        _gold(config, held.scene),
        jax.random.fold_in(key, dataset.scene_hash(fold.held_out)),
        ascent_starts=config.eval.ascent_starts,
        ascent_steps=config.eval.ascent_steps,
        ascent_lr=config.eval.ascent_lr,
    )
    # Where its errors lie (the inspector's criteria of the actions).
    numbers['errors'] = scene_holdout.error_breakdown(
        predict.ensemble_mean_rewards(params, config.reward, jh, actions),
        _criteria(out_dir, held),
        pairs,
        target,
        inspector_lib.from_config(config.inspector),
    )
    rows.append(
        dict(
            scene_id=fold.held_out,
            train_ids=list(fold.train_ids),
            train_scenes=len(fold.train_ids),
            seconds=round(time.perf_counter() - t_fold, 1),
            cpu_seconds=round(_cpu_seconds() - cpu_fold, 1),
            cpu_train=round(cpu_train, 1),
            reward_fold=owner,  # Its reward: fold_<reward_fold>/.
            **numbers,
        )
    )
    logging.info(
        'held out %s: %s',
        fold.held_out,
        json.dumps(
            {
                k: v
                for k, v in rows[-1].items()
                if k not in ('ascent_action', 'errors')
            }
        ),
    )
  store.close()
  phantoms = [r for r in rows if r['scene_id'].startswith('phantom-')]
  others = [r for r in rows if not r['scene_id'].startswith('phantom-')]
  summary = dict(
      folds=rows,
      phantom_mean=_means(phantoms),
      other_scenes={r['scene_id']: _means([r]) for r in others},
      seconds=dict(
          votes=round(t_votes - t0, 1),
          gold=round(t_gold - t_votes, 1),
          folds=round(time.perf_counter() - t_gold, 1),
          total=round(time.perf_counter() - t0, 1),
          # CPU time of this process: on an idle machine with c
          # cores the run takes about cpu / c (JAX uses them all).
          cpu=round(_cpu_seconds(), 1),
          # Where it goes (wall times inflate under load, these do not).
          cpu_votes=round(cpu_votes, 1),
          cpu_gold=round(cpu_gold - cpu_votes, 1),
          cpu_folds=round(_cpu_seconds() - cpu_gold, 1),
      ),
  )
  with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2, default=float)
  with open(os.path.join(out_dir, 'table.md'), 'w') as f:
    f.write(table(rows) + '\n')
  figures_scenes.held_out_figure(rows, os.path.join(out_dir, 'held_out.png'))
  return summary
