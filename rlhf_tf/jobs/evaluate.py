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

``evaluate`` runs one named step per figure or group of numbers, in this
order; each step's PRNG key is split from ``eval.seed`` by purpose. Devices
(config.mesh) split the 20,000 rewards, corner maps and renderings; every
process computes, process 0 alone writes figures and summary.json.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, NamedTuple

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
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.reward import from_store
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward import predict
from rlhf_tf.reward import train
from rlhf_tf.render import polygon


class Setup(NamedTuple):
  """What every step reads: the models, the scene and the inspector."""
  config: object  # the experiment's config
  workdir: str
  out_dir: str  # <workdir>/evaluation[/<scene_id>]: this scene's figures
  params: dict  # loss -> the selected run's parameters
  model: model_lib.RewardModel
  scene: scenes_lib.Scene  # None until scene_view
  jh: np.ndarray  # [B, B] float32, the scene's JH image
  gold: Callable[[np.ndarray], np.ndarray]  # actions [A, n, 2] -> [A]
  mesh: object  # jax.sharding.Mesh or None
  primary: bool  # process 0: writes figures and summary.json


# Per scene, the headline numbers averaged into summary['scene_mean'].
_SCENE_HEADLINES = {
    'spearman_rho': ('rank_correlation', 'spearman_rho'),
    'share_above_expert': ('sharpness', 'share_above_expert_mean'),
    'probing_relative': ('probing', 'found_relative_to_expert')}


def evaluate(config, workdir: str) -> dict:
  t0 = time.perf_counter()
  s = _setup(config, workdir)
  keys = jax.random.split(jax.random.key(config.eval.seed), 4)
  summary = {loss: {} for loss in s.params}
  heldout_pairs(s, summary)
  specs = dataset.scene_specs(config)
  if len(specs) == 1:
    scene_steps(scene_view(s, specs[0], s.out_dir), keys, summary)
  else:
    # Every scene gets the same keys (the same random actions, a
    # comparison across scenes); the figures go to its own folder.
    summary['scenes'] = {}
    for spec in specs:
      logging.info('evaluation of scene %s', spec.scene_id)
      numbers = {loss: {} for loss in s.params}
      scene_steps(scene_view(s, spec, os.path.join(s.out_dir,
                                                   spec.scene_id)),
                  keys, numbers)
      summary['scenes'][spec.scene_id] = numbers
    summary['scene_mean'] = _scene_means(summary['scenes'], s.params)
  summary['seconds'] = round(time.perf_counter() - t0, 1)
  if s.primary:
    _write_summary(s, summary)
  return summary


def scene_steps(s: Setup, keys, summary: dict) -> None:
  """The figures and numbers of one scene, in ``summary[loss]``."""
  k_random, k_gold, k_eval, k_ascent = keys
  expert_rewards = reward_histograms(s, k_random, summary)  # Fig. 2
  rank_correlation(s, k_gold, summary)
  maps = corner_maps(s)  # Fig. 3
  evaluation_tfs(s, k_eval, summary)  # Fig. 4
  reward_probing(s, k_ascent, maps, expert_rewards, summary)
  image_space_gradient(s, summary)


def _scene_means(by_scene: dict, losses) -> dict:
  """{loss: {headline: mean over the scenes}}."""
  return {loss: {name: float(np.mean([numbers[loss][a][b]
                                      for numbers in by_scene.values()]))
                 for name, (a, b) in _SCENE_HEADLINES.items()}
          for loss in losses}


def scene_view(s: Setup, spec, out_dir: str) -> Setup:
  """``s`` on one dataset scene (registered in the store when missing),
  with the inspector scoring at gold_image_size and figures to out_dir."""
  store = dataset.open_store(s.config, s.workdir)
  try:
    scene = dataset.ensure_scene(store, spec, s.config).scene
  finally:
    store.close()
  if s.primary:
    os.makedirs(out_dir, exist_ok=True)
  gold_scene = scene.with_view(image_size=s.config.eval.gold_image_size)
  return s._replace(
      out_dir=out_dir, scene=scene, jh=np.asarray(scene.jh.image,
                                                  np.float32),
      gold=lambda actions: inspector_lib.score_actions(
          gold_scene, actions, s.config.inspector, mesh=s.mesh))


def _setup(config, workdir: str) -> Setup:
  """The selected reward models (trained first when missing and asked to);
  the scene comes with ``scene_view``."""
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
  out_dir = os.path.join(workdir, 'evaluation')
  os.makedirs(out_dir, exist_ok=True)
  return Setup(
      config=config, workdir=workdir, out_dir=out_dir,
      params=predict.load_selected_params(reward_dir),
      model=model_lib.model_from_config(config.reward.model), scene=None,
      jh=None, gold=None, mesh=mesh_lib.make_mesh(config.get('mesh')),
      primary=distributed.is_primary())


def _rewards(s: Setup, params, actions) -> np.ndarray:
  return predict.predict_rewards(params, s.config.reward, s.jh, actions)


def heldout_pairs(s: Setup, summary: dict) -> None:
  """Held-out accuracy, log-loss and ECE on train.py's own split, and the
  tie-aware numbers of the selected runs and of every seed of every loss;
  reliability.png and ties_closer.png."""
  logging.info('held-out pairs: accuracy, log-loss, calibration, ties')
  store = dataset.open_store(s.config, s.workdir)
  try:
    scene_ids, data = from_store.dataset_preference_data(store, s.config)
  finally:
    store.close()
  _, held = train.heldout_split(s.config.reward, data)
  if held is None:
    raise ValueError('config.reward.held_out_fraction is 0: no held-out '
                     'pairs to evaluate')
  # Pairs grouped by scene; ids = each pair's index in the held-out split.
  ids = np.concatenate([np.nonzero(held.scene == k)[0]
                        for k in range(held.jh.shape[0])])
  target = np.asarray(held.target)[ids]
  bins, delta = {}, {}
  for loss, p in s.params.items():
    summary[loss]['heldout'], bins[loss], delta[loss] = _pair_numbers(
        s, held, p)
    if len(scene_ids) > 1:  # Each scene's own held-out pairs.
      scene_of = np.asarray(held.scene)[ids]
      summary[loss]['heldout_by_scene'] = {
          scene_id: metrics.pair_metrics(
              delta[loss][scene_of == k], np.zeros(np.sum(scene_of == k)),
              target[scene_of == k])
          for k, scene_id in enumerate(scene_ids) if np.any(scene_of == k)}
  if s.primary:
    figures.reliability_diagram(
        bins, os.path.join(s.out_dir, 'reliability.png'),
        {loss: summary[loss]['heldout']['ece'] for loss in s.params})
  reward_dir = os.path.join(s.workdir, 'reward')
  ties = _tie_numbers(s, delta, target, ids,
                      predict.selected_tie_nus(reward_dir))
  for loss, numbers in ties.items():
    summary[loss]['heldout_ties'] = numbers
  if s.primary:
    _ties_closer_figure(s, delta, target)
  every, every_nu = predict.load_every_run(reward_dir)
  by_run = _tie_numbers(
      s, {run: _pair_numbers(s, held, p)[2] for run, p in every.items()},
      target, ids, every_nu)
  for loss in s.params:
    summary[loss]['heldout_ties_every_seed'] = _seed_spread(by_run, loss)


def _pair_numbers(s: Setup, held, params):
  """(pair metrics with ECE, reliability bins, r_left - r_right [P]) of one
  run on the held-out pairs, grouped by scene."""
  rl, rr, target = [], [], []
  for k in range(held.jh.shape[0]):
    r = predict.predict_rewards(params, s.config.reward, held.jh[k],
                                held.actions[k])
    m = held.scene == k
    rl.append(r[held.left[m]])
    rr.append(r[held.right[m]])
    target.append(held.target[m])
  rl, rr = np.concatenate(rl), np.concatenate(rr)
  numbers, bins = metrics.pair_metrics_and_calibration(
      rl, rr, np.concatenate(target))
  return numbers, bins, rl - rr


def _tie_numbers(s: Setup, delta: dict, target, ids, tie_nus: dict) -> dict:
  """Tie-aware numbers per run (key of ``delta``). Thresholds (and nu for
  L_C / L_L) are tuned on the validation ids only; the ties-closer check
  reads all held-out pairs (it tunes nothing)."""
  ev = s.config.eval
  val_ids, test_ids = tie_metrics.split_validation_test(
      ids, target, float(ev.tie_validation_fraction), int(ev.seed))
  assert not np.intersect1d(val_ids, test_ids).size
  out = {}
  for run, d in delta.items():
    out[run] = tie_metrics.tie_aware_metrics(d, target, ids, val_ids,
                                             tie_nu=tie_nus.get(run))
    out[run]['ties_closer'] = tie_metrics.ties_closer(d, target)
  return out


def _ties_closer_figure(s: Setup, delta: dict, target) -> None:
  """ties_closer.png, when both kinds of pair are held out."""
  num_ties = int(np.sum(target == 0.5))
  if 0 < num_ties < target.size:
    figures_ties.ties_closer(delta, target,
                             os.path.join(s.out_dir, 'ties_closer.png'))
  else:
    logging.warning('ties_closer.png not drawn: %d ties of %d held-out pairs',
                    num_ties, target.size)


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


def reward_histograms(s: Setup, key, summary: dict) -> dict:
  """Fig. 2: rewards of eval.num_random random actions and sharpness;
  returns the experts' rewards per loss."""
  logging.info('Fig. 2: %d random actions', s.config.eval.num_random)
  random_rewards, expert_rewards, sharp = {}, {}, {}
  for loss, p in s.params.items():
    _, random_rewards[loss] = probing.random_action_rewards(
        s.model, p, s.jh, key, num=s.config.eval.num_random,
        n_vertices=s.scene.experts.shape[1], mesh=s.mesh)
    expert_rewards[loss] = _rewards(s, p, s.scene.experts)
    sharp[loss] = metrics.sharpness(np.asarray(random_rewards[loss]),
                                    expert_rewards[loss])
    summary[loss]['sharpness'] = sharp[loss]
  if s.primary:
    figures.reward_histograms(
        random_rewards, os.path.join(s.out_dir, 'fig2_reward_histograms.png'),
        expert_rewards_by_loss=expert_rewards, stats_by_loss=sharp)
  return expert_rewards


def rank_correlation(s: Setup, key, summary: dict) -> None:
  """Spearman / Kendall of reward vs inspector over unseen random actions."""
  num = s.config.eval.num_gold
  logging.info('rank correlation with the inspector over %d unseen actions',
               num)
  actions = np.asarray(polygon.random_actions(key, num,
                                              s.scene.experts.shape[1]))
  gold_scores = s.gold(actions)
  for loss, p in s.params.items():
    summary[loss]['rank_correlation'] = metrics.rank_correlations(
        _rewards(s, p, actions), gold_scores)


def corner_maps(s: Setup) -> dict:
  """Fig. 3: the reward of each vertex at every JH pixel (the others at the
  first expert), with renders at vertex 4's low, medium and high reward;
  returns the maps per loss."""
  logging.info('Fig. 3: corner maps')
  base = s.scene.experts[0]
  maps, renders = {}, {}
  for loss, p in s.params.items():
    maps[loss] = np.asarray(probing.corner_maps(s.model, p, s.jh, base,
                                                mesh=s.mesh))
    renders[loss] = [
        (label, xy, value, np.asarray(s.scene.render(action))[..., :3])
        for label, xy, value, action in probing.corner_map_picks(
            maps[loss], base, k=3)]
  if s.primary:
    figures_probing.corner_plots(
        maps, s.jh, base, os.path.join(s.out_dir, 'fig3_corner_plots.png'),
        axes=s.scene.jh.axes, renders_by_loss=renders)
  return maps


def evaluation_tfs(s: Setup, key, summary: dict) -> None:
  """Fig. 4: eval.num_eval_tfs unseen TFs spread from expert-like to poor
  by inspector score (augmented experts with growing shifts, and random
  actions), sorted by each loss's reward."""
  ev = s.config.eval
  logging.info('Fig. 4: %d evaluation TFs', ev.num_eval_tfs)
  k_aug, k_rand = jax.random.split(key)
  experts = s.scene.experts
  n_aug = ev.eval_candidates // 2
  pool = []
  for j in range(n_aug):
    sigma = 0.01 + 0.12 * j / max(n_aug - 1, 1)
    e = experts[j % len(experts)]
    shift = sigma * np.asarray(jax.random.normal(jax.random.fold_in(k_aug, j),
                                                 e.shape))
    pool.append(np.asarray(polygon.canonicalize(np.clip(e + shift, 0, 1))))
  pool += list(np.asarray(polygon.random_actions(
      k_rand, ev.eval_candidates - n_aug, experts.shape[1])))
  pool = np.stack(pool).astype(np.float32)
  scores = s.gold(pool)
  # Pick evenly over the score ranking, best to worst.
  order = np.argsort(-scores)
  pick = order[np.round(np.linspace(0, len(order) - 1,
                                    ev.num_eval_tfs)).astype(int)]
  actions, gold_scores = pool[pick], scores[pick]
  images = s.scene.render_many(actions, mesh=s.mesh)[..., :3]
  rewards = {loss: _rewards(s, p, actions) for loss, p in s.params.items()}
  if s.primary:
    figures.evaluation_grids(
        images, rewards, gold_scores,
        os.path.join(s.out_dir, 'fig4_evaluation_tfs.png'))
  for loss in s.params:
    summary[loss]['eval_tfs'] = metrics.rank_correlations(rewards[loss],
                                                          gold_scores)


def reward_probing(s: Setup, key, maps: dict, expert_rewards: dict,
                   summary: dict) -> None:
  """dr/dvertices at the expert and reward ascent from eval.ascent_starts
  random actions: the found TF's inspector score and its distance to the
  corner maps' optima; probing_gradients.png of the first loss."""
  ev = s.config.eval
  logging.info('probing: gradients and reward ascent')
  base = s.scene.experts[0]
  expert_gold = float(s.gold(base[None])[0])
  arrows = {}
  for loss, p in s.params.items():
    grad = np.asarray(probing.reward_gradient(s.model, p, s.jh, base))
    asc = probing.reward_ascent(s.model, p, s.jh, key,
                                num_starts=ev.ascent_starts,
                                steps=ev.ascent_steps, lr=ev.ascent_lr,
                                n_vertices=base.shape[0])
    area = np.asarray(asc['area'])
    rewards = np.where(area >= 1e-4, np.asarray(asc['rewards']), -np.inf)
    best = int(np.argmax(rewards))
    found = np.asarray(asc['actions'])[best]
    found_gold = float(s.gold(found[None])[0])
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
        corner_map_best_distance=probing.distance_to_optima(
            found, probing.corner_map_optima(maps[loss])))
    arrows[loss] = (grad, np.asarray(asc['actions'])[area >= 1e-4])
  if s.primary:
    grad, ascent_actions = arrows[next(iter(s.params))]
    figures_probing.gradient_arrows(
        s.jh, base, grad, os.path.join(s.out_dir, 'probing_gradients.png'),
        axes=s.scene.jh.axes, ascent_actions=ascent_actions)


def image_space_gradient(s: Setup, summary: dict) -> None:
  """d(mean alpha of the rendering)/dvertices at the expert, through the
  renderer."""
  value, grad = probing.image_objective_gradient(
      s.scene, s.scene.experts[0], 'mean_alpha')
  summary['image_space_gradient'] = dict(objective='mean_alpha',
                                         value=float(value),
                                         grad=np.asarray(grad).tolist())


def _write_summary(s: Setup, summary: dict) -> None:
  """<workdir>/evaluation/summary.json, and the headline numbers per loss
  (per scene, with several) on stdout."""
  with open(os.path.join(s.workdir, 'evaluation', 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2, default=float)
  heldout = {loss: dict(
      heldout_accuracy=summary[loss]['heldout']['accuracy'],
      three_way_accuracy=summary[loss]['heldout_ties']['three_way_accuracy'],
      ties_below_untied_median=summary[loss]['heldout_ties']['ties_closer'][
          'share_below_median'],
      ece=summary[loss]['heldout']['ece']) for loss in s.params}

  def per_scene(numbers):
    return {loss: dict(
        spearman=numbers[loss]['rank_correlation']['spearman_rho'],
        share_above_expert=numbers[loss]['sharpness'][
            'share_above_expert_mean'],
        probing_relative=numbers[loss]['probing'][
            'found_relative_to_expert']) for loss in s.params}

  if 'scenes' not in summary:
    scene = per_scene(summary)
    print(json.dumps({loss: {**heldout[loss], **scene[loss]}
                      for loss in s.params}, indent=2, default=float))
    return
  print(json.dumps(dict(
      heldout=heldout, scene_mean=summary['scene_mean'],
      scenes={k: per_scene(v) for k, v in summary['scenes'].items()}),
                   indent=2, default=float))
