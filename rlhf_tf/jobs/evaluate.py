"""Job `evaluate`: the paper's Fig. 2-4, numbers it lacks, gradient probing.

Reads the trained reward models of <workdir>/reward (the run each loss's
selection rule picked; trained first with config.train_if_missing) and the
first scene of the dataset config, and writes to <workdir>/evaluation:

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
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
import jax
import numpy as np

from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.evaluation import figures
from rlhf_tf.evaluation import figures_probing
from rlhf_tf.evaluation import figures_ties
from rlhf_tf.evaluation import metrics
from rlhf_tf.evaluation import probing
from rlhf_tf.evaluation import tie_metrics
from rlhf_tf.jobs import reward as reward_job
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.reward import from_store
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward import predict
from rlhf_tf.reward import train
from rlhf_tf.render import polygon


def _selected_params(reward_dir: str):
  with open(os.path.join(reward_dir, 'summary.json')) as f:
    summary = json.load(f)
  return {loss: predict.load_params(reward_dir, loss, sel['seed'])
          for loss, sel in summary['selected'].items()}


def _learned_tie_nus(reward_dir: str):
  """{loss: nu} of the selected runs of losses that learn one (L_D)."""
  with open(os.path.join(reward_dir, 'summary.json')) as f:
    summary = json.load(f)
  return {loss: sel['final']['tie_nu']
          for loss, sel in summary['selected'].items()
          if sel['final'].get('tie_nu') is not None}


def _every_seed(reward_dir: str):
  """({'<loss>/seed_<k>': params}, {'<loss>/seed_<k>': learned nu}) of
  every trained run, not only the selected ones."""
  with open(os.path.join(reward_dir, 'summary.json')) as f:
    runs = json.load(f)['runs']
  params, nus = {}, {}
  for loss, by_seed in runs.items():
    for name, final in by_seed.items():
      key = f'{loss}/{name}'
      params[key] = predict.load_params(reward_dir, loss,
                                        int(name.split('_')[1]))
      if final and final.get('tie_nu') is not None:
        nus[key] = final['tie_nu']
  return params, nus


def _seed_spread(by_run: dict, loss: str) -> dict:
  """{number: {'by_seed': {seed: value}, 'min', 'max', 'mean'}} of a loss's
  runs for the headline tie-aware numbers (one run says little: runs of one
  loss differ by more than the losses do on some of these)."""
  runs = {k.split('/')[1]: v for k, v in by_run.items()
          if k.split('/')[0] == loss}
  out = {}
  for name in ('three_way_accuracy', 'pickscore_accuracy',
               'decisive_accuracy', 'tie_loglik_davidson',
               'three_way_loglik'):
    values = {seed: v[name] for seed, v in runs.items()}
    out[name] = dict(by_seed=values, min=min(values.values()),
                     max=max(values.values()),
                     mean=float(np.mean(list(values.values()))))
  closer = {seed: v['ties_closer']['share_below_median']
            for seed, v in runs.items()}
  out['ties_below_untied_median'] = dict(
      by_seed=closer, min=min(closer.values()), max=max(closer.values()),
      mean=float(np.mean(list(closer.values()))))
  return out


def _heldout_numbers(config, workdir, params, model_cfg):
  """Held-out pair metrics and calibration, on train.py's own split.

  Returns:
    ({loss: (numbers, calibration bins, delta [P])}, target [P], ids [P]):
    ids = each pair's index in the held-out split, in the order of delta.
  """
  store = dataset.open_store(config, workdir)
  try:
    _, data = from_store.dataset_preference_data(store, config)
  finally:
    store.close()
  _, held = train.heldout_split(config.reward, data)
  out = {}
  for loss, p in params.items():
    rl, rr = [], []
    for s in range(held.jh.shape[0]):
      r = predict.predict_rewards(p, model_cfg, held.jh[s], held.actions[s])
      m = held.scene == s
      rl.append(r[held.left[m]])
      rr.append(r[held.right[m]])
    rl, rr = np.concatenate(rl), np.concatenate(rr)
    target = np.concatenate([held.target[held.scene == s]
                             for s in range(held.jh.shape[0])])
    numbers = metrics.pair_metrics(rl, rr, target)
    decisive = target != 0.5
    p_left = 1.0 / (1.0 + np.exp(-(rl - rr)[decisive]))
    ece, bins = metrics.expected_calibration_error(
        p_left, (target[decisive] == 1.0).astype(float), num_bins=10)
    numbers['ece'] = ece
    out[loss] = (numbers, bins, rl - rr)
  ids = np.concatenate([np.nonzero(held.scene == s)[0]
                        for s in range(held.jh.shape[0])])
  return out, np.asarray(held.target)[ids], ids


def _tie_numbers(config, held, target, ids, tie_nus, out_dir):
  """Tie-aware numbers per loss; the ties-closer figure when both kinds of
  pair are held out and ``out_dir`` is given (process 0). Thresholds (and
  nu for L_C / L_L) are tuned on the validation ids only; the ties-closer
  check reads all held-out pairs (it tunes nothing)."""
  val_ids, test_ids = tie_metrics.split_validation_test(
      ids, target, float(config.eval.tie_validation_fraction),
      int(config.eval.seed))
  assert not np.intersect1d(val_ids, test_ids).size
  out = {}
  for loss, (_, _, delta) in held.items():
    out[loss] = tie_metrics.tie_aware_metrics(delta, target, ids, val_ids,
                                              tie_nu=tie_nus.get(loss))
    out[loss]['ties_closer'] = tie_metrics.ties_closer(delta, target)
  if out_dir is None:
    return out
  num_ties = int(np.sum(target == 0.5))
  if 0 < num_ties < target.size:
    figures_ties.ties_closer({loss: h[2] for loss, h in held.items()},
                             target, os.path.join(out_dir, 'ties_closer.png'))
  else:
    logging.warning('ties_closer.png not drawn: %d ties of %d held-out pairs',
                    num_ties, target.size)
  return out


def _corner_renders(scene, maps, base, k=3):
  """Renders with vertex k at the map's lowest, median and highest reward."""
  grid = maps.shape[-1]
  flat = maps[k].reshape(-1)
  order = np.argsort(flat)
  out = []
  for label, idx in (('low', order[0]), ('medium', order[len(order) // 2]),
                     ('high', order[-1])):
    row, col = divmod(int(idx), grid)
    xy = ((col + 0.5) / grid, (row + 0.5) / grid)
    action = np.array(base, np.float32)
    action[k] = xy
    image = np.asarray(scene.render(action))[..., :3]
    out.append((label, xy, float(flat[idx]), image))
  return out


def _eval_tfs(key, scene, gold, num: int, candidates: int):
  """``num`` unseen TFs spread from expert-like to poor by inspector score:
  augmentations of the experts with growing shifts and random actions."""
  k_aug, k_rand = jax.random.split(key)
  experts = scene.experts
  n_aug = candidates // 2
  pool = []
  for j in range(n_aug):
    sigma = 0.01 + 0.12 * j / max(n_aug - 1, 1)
    e = experts[j % len(experts)]
    shift = sigma * np.asarray(jax.random.normal(jax.random.fold_in(k_aug, j),
                                                 e.shape))
    pool.append(np.asarray(polygon.canonicalize(np.clip(e + shift, 0, 1))))
  pool += list(np.asarray(polygon.random_actions(
      k_rand, candidates - n_aug, experts.shape[1])))
  pool = np.stack(pool).astype(np.float32)
  scores = gold(pool)
  # Pick evenly over the score ranking, best to worst.
  order = np.argsort(-scores)
  pick = order[np.round(np.linspace(0, len(order) - 1, num)).astype(int)]
  return pool[pick], scores[pick]


def evaluate(config, workdir: str) -> dict:
  t0 = time.perf_counter()
  ev = config.eval
  out_dir = os.path.join(workdir, 'evaluation')
  os.makedirs(out_dir, exist_ok=True)
  reward_dir = os.path.join(workdir, 'reward')
  if not os.path.exists(os.path.join(reward_dir, 'summary.json')):
    # Only experiments/evaluate.py sets train_if_missing (':smoke' does).
    if not config.get('train_if_missing', False):
      raise FileNotFoundError(
          f'no trained reward model in {reward_dir}: run '
          f'experiments/reward_ce.py or the quickstart with this workdir '
          f'first, or set --experiment.train_if_missing=True')
    logging.info('no reward model in %s: training one first', reward_dir)
    reward_job.train_reward(config, workdir)
  params = _selected_params(reward_dir)
  model_cfg = config.reward
  model = model_lib.model_from_config(model_cfg.model)
  store = dataset.open_store(config, workdir)
  spec = dataset.scene_specs(config)[0]
  scene = dataset.ensure_scene(store, spec, config).scene
  store.close()
  gold_scene = scene.with_view(image_size=ev.gold_image_size)
  # Devices split the 20,000 rewards, corner maps and renderings; every
  # process computes, process 0 alone writes figures and summary.json.
  mesh = mesh_lib.make_mesh(config.get('mesh'))
  primary = distributed.is_primary()
  gold = lambda actions: inspector_lib.score_actions(  # noqa: E731
      gold_scene, actions, config.inspector, mesh=mesh)
  jh = np.asarray(scene.jh.image, np.float32)
  key = jax.random.key(ev.seed)
  k_random, k_gold, k_eval, k_ascent = jax.random.split(key, 4)
  summary = {loss: {} for loss in params}

  logging.info('held-out pairs: accuracy, log-loss, calibration, ties')
  held, target, ids = _heldout_numbers(config, workdir, params, model_cfg)
  for loss, (numbers, _, _) in held.items():
    summary[loss]['heldout'] = numbers
  if primary:
    figures.reliability_diagram({l: h[1] for l, h in held.items()},
                                os.path.join(out_dir, 'reliability.png'),
                                {l: h[0]['ece'] for l, h in held.items()})
  ties = _tie_numbers(config, held, target, ids, _learned_tie_nus(reward_dir),
                      out_dir if primary else None)
  for loss, numbers in ties.items():
    summary[loss]['heldout_ties'] = numbers
  every, every_nu = _every_seed(reward_dir)
  by_run = _tie_numbers(config, _heldout_numbers(config, workdir, every,
                                                 model_cfg)[0],
                        target, ids, every_nu, None)
  for loss in params:
    summary[loss]['heldout_ties_every_seed'] = _seed_spread(by_run, loss)

  logging.info('Fig. 2: %d random actions', ev.num_random)
  random_rewards, expert_rewards, sharp = {}, {}, {}
  for loss, p in params.items():
    _, random_rewards[loss] = probing.random_action_rewards(
        model, p, jh, k_random, num=ev.num_random,
        n_vertices=scene.experts.shape[1], mesh=mesh)
    expert_rewards[loss] = predict.predict_rewards(p, model_cfg, jh,
                                                   scene.experts)
    sharp[loss] = metrics.sharpness(np.asarray(random_rewards[loss]),
                                    expert_rewards[loss])
    summary[loss]['sharpness'] = sharp[loss]
  if primary:
    figures.reward_histograms(
        random_rewards, os.path.join(out_dir, 'fig2_reward_histograms.png'),
        expert_rewards_by_loss=expert_rewards, stats_by_loss=sharp)

  logging.info('rank correlation with the inspector over %d unseen actions',
               ev.num_gold)
  gold_actions = np.asarray(polygon.random_actions(
      k_gold, ev.num_gold, scene.experts.shape[1]))
  gold_scores = gold(gold_actions)
  for loss, p in params.items():
    r = predict.predict_rewards(p, model_cfg, jh, gold_actions)
    summary[loss]['rank_correlation'] = metrics.rank_correlations(
        r, gold_scores)

  logging.info('Fig. 3: corner maps')
  base = scene.experts[0]
  maps, renders = {}, {}
  for loss, p in params.items():
    maps[loss] = np.asarray(probing.corner_maps(model, p, jh, base,
                                                mesh=mesh))
    renders[loss] = _corner_renders(scene, maps[loss], base)
  if primary:
    figures_probing.corner_plots(
        maps, jh, base, os.path.join(out_dir, 'fig3_corner_plots.png'),
        axes=scene.jh.axes, renders_by_loss=renders)

  logging.info('Fig. 4: %d evaluation TFs', ev.num_eval_tfs)
  eval_actions, eval_gold = _eval_tfs(k_eval, scene, gold, ev.num_eval_tfs,
                                      ev.eval_candidates)
  images = scene.render_many(eval_actions, mesh=mesh)[..., :3]
  eval_rewards = {loss: predict.predict_rewards(p, model_cfg, jh,
                                                eval_actions)
                  for loss, p in params.items()}
  if primary:
    figures.evaluation_grids(images, eval_rewards, eval_gold,
                             os.path.join(out_dir, 'fig4_evaluation_tfs.png'))
  for loss in params:
    summary[loss]['eval_tfs'] = metrics.rank_correlations(eval_rewards[loss],
                                                          eval_gold)

  logging.info('probing: gradients and reward ascent')
  expert_gold = float(gold(base[None])[0])
  ascent_by_loss = {}
  for loss, p in params.items():
    grad = np.asarray(probing.reward_gradient(model, p, jh, base))
    asc = probing.reward_ascent(model, p, jh, k_ascent,
                                num_starts=ev.ascent_starts,
                                steps=ev.ascent_steps, lr=ev.ascent_lr,
                                n_vertices=base.shape[0])
    area = np.asarray(asc['area'])
    rewards = np.where(area >= 1e-4, np.asarray(asc['rewards']), -np.inf)
    best = int(np.argmax(rewards))
    found = np.asarray(asc['actions'])[best]
    found_gold = float(gold(found[None])[0])
    best_xy = []
    for k in range(base.shape[0]):
      row, col = np.unravel_index(np.argmax(maps[loss][k]), maps[loss][k].shape)
      g = maps[loss].shape[-1]
      best_xy.append(((col + 0.5) / g, (row + 0.5) / g))
    best_xy = np.asarray(best_xy)
    # Match each corner-map optimum to the nearest vertex of the found TF.
    dist = np.linalg.norm(found[None, :, :] - best_xy[:, None, :], axis=-1)
    summary[loss]['probing'] = dict(
        grad_at_expert=grad.tolist(),
        ascent_start_mean_reward=float(np.mean(asc['initial_rewards'])),
        ascent_final_mean_reward=float(np.mean(asc['rewards'])),
        ascent_best_reward=float(rewards[best]),
        expert_reward=float(np.mean(expert_rewards[loss])),
        found_action=found.tolist(),
        found_inspector_score=found_gold,
        expert_inspector_score=expert_gold,
        found_relative_to_expert=found_gold / max(expert_gold, 1e-9),
        corner_map_best_distance=float(dist.min(axis=1).mean()))
    ascent_by_loss[loss] = (grad, np.asarray(asc['actions'])[area >= 1e-4])
  first = next(iter(params))
  if primary:
    figures_probing.gradient_arrows(
        jh, base, ascent_by_loss[first][0],
        os.path.join(out_dir, 'probing_gradients.png'), axes=scene.jh.axes,
        ascent_actions=ascent_by_loss[first][1])
  value, grad = probing.image_objective_gradient(scene, base, 'mean_alpha')
  summary['image_space_gradient'] = dict(objective='mean_alpha',
                                         value=float(value),
                                         grad=np.asarray(grad).tolist())
  summary['seconds'] = round(time.perf_counter() - t0, 1)
  if not primary:
    return summary
  with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2, default=float)
  print(json.dumps({loss: dict(
      heldout_accuracy=summary[loss]['heldout']['accuracy'],
      three_way_accuracy=summary[loss]['heldout_ties']['three_way_accuracy'],
      ties_below_untied_median=summary[loss]['heldout_ties']['ties_closer'][
          'share_below_median'],
      ece=summary[loss]['heldout']['ece'],
      spearman=summary[loss]['rank_correlation']['spearman_rho'],
      share_above_expert=summary[loss]['sharpness'][
          'share_above_expert_mean'],
      probing_relative=summary[loss]['probing']['found_relative_to_expert'])
                    for loss in params}, indent=2, default=float))
  return summary
