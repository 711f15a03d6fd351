"""The `propose` run: a TF for a new scan from a trained reward ensemble.

Volume (phantom | cranium | DICOM folder | .inv3) + a trained reward workdir
(+ optionally the agent's action) -> ranked candidates (rlhf_tf.evaluation
.proposal), written to a workdir: a rendering per kept candidate, the kept
polygons on the JH, a turntable of the proposal, the viewers' exports
(rlhf_tf.export.bundle) and the comparison with the baselines
(rlhf_tf.evaluation.baselines). The job rlhf_tf/jobs/propose.py drives it.

Candidates: the agent's action, the final polygons of the multi-start reward
ascent under every seed (evaluation.proposal), and the built-in expert
heuristic (preferences.experts).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from absl import logging
import jax
import numpy as np
from PIL import Image

from rlhf_tf.data import sources
from rlhf_tf.evaluation import baselines, proposal, proposal_figures
from rlhf_tf.export import bundle, tables
from rlhf_tf.preferences import dataset, simulated_votes
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.preferences import store as store_lib
from rlhf_tf.reward import ensemble as ensemble_lib
from rlhf_tf.reward import from_store
from rlhf_tf.reward import train as reward_train


def train_reward_on_simulated_votes(config, root: str) -> None:
  """Simulated votes on config's dataset scenes + the reward, into root (only
  with config.train_reward_if_missing: the smoke run is self-contained)."""
  store = dataset.open_store(config, root)
  try:
    for spec in dataset.scene_specs(config):
      data = dataset.ensure_scene(store, spec, config)
      key = jax.random.fold_in(
          jax.random.key(config.inspector.seed),
          dataset.scene_hash(spec.scene_id),
      )
      simulated_votes.judge_scene(data, store, config, key, progress=False)
    _, data = from_store.dataset_preference_data(store, config)
  finally:
    store.close()
  reward_train.train_and_evaluate(
      config.reward, os.path.join(root, 'reward'), data
  )


def load_or_train_ensemble(
    config, workdir: str, say
) -> proposal.RewardEnsemble:
  """Every seed of config.loss in <config.reward_workdir>/reward; trained
  into workdir first when missing and config.train_reward_if_missing."""
  root = config.reward_workdir or workdir
  ckpt = os.path.join(root, 'reward', config.loss, 'checkpoints')
  if config.train_reward_if_missing and not os.path.isdir(ckpt):
    say(f'no reward in {root}: training a {config.loss} reward first')
    train_reward_on_simulated_votes(config, root)
  elif not config.reward_workdir:
    raise proposal.RewardWorkdirError(
        'config.reward_workdir is empty: give the workdir of a trained '
        'reward, e.g. --experiment.reward_workdir=workdir/quickstart'
    )
  return proposal.load_ensemble(
      root, config.reward, config.loss, int(config.histogram.bins)
  )


def training_jhs(root: str, bins: int) -> tuple[list, list]:
  """(scene ids, JH images) of the scenes in the reward's preference store."""
  path = os.path.join(root, 'preferences.sqlite')
  if not os.path.isfile(path):
    return [], []
  store = store_lib.PreferenceStore(path)
  try:
    ids, images = [], []
    for s in store.scenes():
      jh = dataset.scene_jh(store, s['scene_id'])
      if jh.bins == bins:
        ids.append(s['scene_id'])
        images.append(jh.image)
    return ids, images
  finally:
    store.close()


def polygon_record(vertices, axes) -> dict:
  """A polygon [n, 2] in JH coordinates and in HU x HU/mm (axes)."""
  v = np.asarray(vertices, np.float64)
  return dict(
      jh=v.round(6).tolist(),
      hu_gradient=np.stack([axes.x_to_hu(v[:, 0]), axes.y_to_grad(v[:, 1])], -1)
      .round(3)
      .tolist(),
  )


def propose(
    config,
    workdir: str,
    say: Callable[[str], None],
    agent_action: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> dict:
  """The ranked candidates for config.volume, their renderings, figures,
  exports and (config.baselines.enabled) the baseline comparison, written to
  workdir; returns proposal.json's content but for 'seconds'.

  say: prints one progress line. agent_action: jh_image [B, B] -> the agent's
  action [n, 2], a candidate when given (rlhf_tf.agent.saved_policy).
  """
  p = config.propose
  volume = sources.load_volume(config.volume)
  say(f'volume {volume.name}: {"x".join(map(str, volume.shape))} voxels')
  ens = load_or_train_ensemble(config, workdir, say)
  say(
      f'reward ensemble: {ens.num_seeds} seeds of {ens.loss}, step '
      f'{ens.step} ({ens.checkpoint_dir})'
  )
  scene = scenes_lib.build_scene(
      volume.name, volume, config.histogram, config.render
  )
  axes = scene.jh.axes
  say(f'JH and view ready ({scene.bins} bins, {config.render.image_size} px)')
  root = config.reward_workdir or workdir
  train_ids, train_images = training_jhs(root, scene.bins)
  ood = proposal.ood_distance(scene.jh.image, train_images)
  ood['training_scenes'] = train_ids
  ood['scan_specificity'] = proposal.scan_specificity_note(len(train_ids))
  if len(train_ids) <= 1:
    say(f'NOTE: {ood["scan_specificity"]}')
  if ood['out_of_distribution']:
    msg = (
        f'WARNING: this JH is {ood["distance"]:.3f} from the reward\'s '
        f'training JHs (threshold {ood["threshold"]}): out of '
        f'distribution, trust the proposal less'
    )
    logging.warning(msg)
    say(msg)
  else:
    say(
        f'JH distance to the training JHs {ood["distance"]:.3f} (<= '
        f'{ood["threshold"]}: in distribution)'
    )

  key = jax.random.key(p.seed)
  actions, origin = [], []
  if agent_action is not None:
    actions.append(agent_action(scene.jh.image))
    origin.append('agent')
  ascent = proposal.ascent_candidates(
      ens, scene.jh.image, key, p.ascent_starts, p.ascent_steps, p.ascent_lr
  )
  actions += list(ascent)
  origin += ['reward ascent'] * len(ascent)
  actions.append(scene.experts[0])
  origin.append('expert heuristic')
  actions = np.asarray(actions, np.float32)
  say(f'{len(actions)} candidates ({len(ascent)} from the reward ascent)')
  reference = ensemble_lib.reference_actions(
      ens.model.n_vertices, p.reference_actions
  )
  raw = proposal.ensemble_rewards(ens, scene.jh.image, actions)
  raw_reference = proposal.ensemble_rewards(ens, scene.jh.image, reference)
  rewards = proposal.standardise(raw, raw_reference)
  mean, std, cons = proposal.conservative(rewards, p.ensemble_k)
  kept = proposal.rank(actions, rewards, p.ensemble_k, p.top_k)
  gold_scene = scene.with_view(image_size=p.gold_image_size)
  gold = inspector_lib.score_actions(
      gold_scene, actions[kept], config.inspector
  )
  candidates = []
  for rank_i, (i, g) in enumerate(zip(kept, gold)):
    png = os.path.join(workdir, f'candidate_{rank_i}.png')
    Image.fromarray(scenes_lib.rgb_uint8(scene.render(actions[i]))).save(png)
    candidates.append(
        dict(
            rank=rank_i,
            source=origin[i],
            polygon=polygon_record(actions[i], axes),
            reward_mean=float(mean[i]),
            reward_std=float(std[i]),
            reward_conservative=float(cons[i]),
            reward_per_seed=rewards[:, i].round(5).tolist(),
            raw_reward_per_seed=raw[:, i].round(5).tolist(),
            inspector_score=float(g),
            rendering=os.path.basename(png),
        )
    )
  best = actions[kept[0]]
  say(
      f'proposal: {origin[kept[0]]}, reward {mean[kept[0]]:.3f} +- '
      f'{std[kept[0]]:.3f}, inspector {gold[0]:.3f}'
  )
  proposal_figures.polygons_on_jh(
      scene.jh,
      actions[kept],
      [f'#{c["rank"]} {c["source"]}' for c in candidates],
      os.path.join(workdir, 'polygons_on_jh.png'),
  )
  if p.turntable_views:
    proposal_figures.turntable_gif(
        scene,
        best,
        p.turntable_views,
        p.turntable_size,
        os.path.join(workdir, 'turntable.gif'),
    )
    say(f'turntable.gif ({p.turntable_views} views)')

  provenance = dict(
      reward_workdir=os.path.abspath(root),
      loss=ens.loss,
      checkpoint_step=ens.step,
      volume=volume.name,
      volume_source=config.volume.to_dict(),
  )
  table = tables.polygon_table(
      best,
      axes,
      scene.bins,
      scene.tau,
      scene.alpha_max,
      scene.settings.reference_step_mm,
      name=f'rlhf_tf proposal for {volume.name}',
  )
  exports = bundle.write_exports(
      os.path.join(workdir, 'export'),
      table,
      scene.jh,
      float(np.mean(np.asarray(volume.spacing))),
      bundle.shading_of(scene.settings),
      provenance=dict(volume=volume.name, checkpoint_step=ens.step),
      volume=volume if config.export_volume else None,
  )
  say(
      f'exports in {os.path.join(workdir, "export")} (separable support IoU '
      f'{exports["separable"]["support_iou"]:.3f})'
  )
  result = dict(
      volume=volume.name,
      candidates=candidates,
      ood=ood,
      tf_parameters=dict(
          bins=scene.bins,
          tau=scene.tau,
          alpha_max=scene.alpha_max,
          colormap='bone',
          opacity_unit_distance_mm=float(scene.settings.reference_step_mm),
          hu_min=axes.hu_min,
          hu_max=axes.hu_max,
          grad_max_hu_per_mm=axes.grad_max,
      ),
      ranking=dict(
          rule='reward mean - k std over the ensemble seeds',
          reward_units=f'per-seed z-score against '
          f'{p.reference_actions} random actions on this JH',
          reference=dict(
              num_actions=p.reference_actions,
              key_seed=ensemble_lib.REFERENCE_SEED,
              drawn_by='rlhf_tf.reward.ensemble.reference_actions',
              raw_reward_per_seed=ensemble_lib.reference_stats(raw_reference),
          ),
          k=p.ensemble_k,
          top_k=p.top_k,
          num_candidates=len(actions),
      ),
      exports=exports,
      provenance=provenance,
  )
  if config.baselines.enabled:
    result['baselines'] = baselines.compare_with_proposal(
        config, workdir, gold_scene, scene, best, say
    )
  return result
