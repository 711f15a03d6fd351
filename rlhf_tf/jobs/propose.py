"""Job `propose`: a TF for a new scan, in the formats of the field.

Volume (phantom | cranium | DICOM folder | .inv3) + a trained reward workdir
(+ optionally an agent workdir) -> <workdir>/:

  proposal.json        candidates ranked by the conservative ensemble reward
                       mean - k std over the reward's seeds (polygon in JH
                       coordinates and in HU x HU/mm, TF parameters, reward
                       mean/std, inspector score), the out-of-distribution
                       distance, the separable export's error, provenance
  candidate_<i>.png    a rendering per kept candidate (0 = the proposal)
  polygons_on_jh.png   the kept polygons on the JH
  turntable.gif        the proposal seen from around the head
  export/              tf.nrrd + render_tf_vtk.py, tf.vp.json, tf.vp,
                       tf_paraview.json (rlhf_tf.export.bundle)
  baselines.json/.md/.png  inspector score of the proposal vs the built-in
                       expert, every imported preset and the median random
                       action (.md: the table); the renderings side by side

Candidates: the agent's action (config.agent_workdir), the final polygons of
the multi-start reward ascent under every seed (evaluation.probing), and the
built-in expert heuristic (preferences.experts).
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image

from rlhf_tf.agent import policy as policy_lib
from rlhf_tf.data import sources
from rlhf_tf.evaluation import baselines, figures, proposal, proposal_figures
from rlhf_tf.export import bundle, tables
from rlhf_tf.preferences import dataset, simulated_votes
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.preferences import store as store_lib
from rlhf_tf.reward import ensemble as ensemble_lib
from rlhf_tf.reward import from_store
from rlhf_tf.reward import train as reward_train


class _Progress:
  """One console line per stage, with the elapsed time."""

  def __init__(self):
    self.t0 = time.perf_counter()

  def __call__(self, msg: str):
    print(f'[propose {time.perf_counter() - self.t0:5.1f} s] {msg}', flush=True)

  @property
  def seconds(self) -> float:
    return time.perf_counter() - self.t0


def _train_reward_here(config, root: str) -> None:
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


def _ensemble(config, workdir: str, say) -> proposal.RewardEnsemble:
  root = config.reward_workdir or workdir
  ckpt = os.path.join(root, 'reward', config.loss, 'checkpoints')
  if config.train_reward_if_missing and not os.path.isdir(ckpt):
    say(f'no reward in {root}: training a {config.loss} reward first')
    _train_reward_here(config, root)
  elif not config.reward_workdir:
    raise proposal.RewardWorkdirError(
        'config.reward_workdir is empty: give the workdir of a trained '
        'reward, e.g. --experiment.reward_workdir=workdir/quickstart'
    )
  return proposal.load_ensemble(
      root, config.reward, config.loss, int(config.histogram.bins)
  )


def _training_jhs(root: str, bins: int) -> tuple[list, list]:
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


def _agent_action(config, jh_image) -> np.ndarray:
  net = policy_lib.net_from_config(config.agent_policy)
  path = os.path.abspath(
      os.path.join(config.agent_workdir, 'agent', 'checkpoint')
  )
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f'{path} not found: config.agent_workdir must be '
        f'the workdir of a train_agent run'
    )
  like = policy_lib.init_params(net, jax.random.key(0), jh_image.shape[-1])
  params = ocp.StandardCheckpointer().restore(
      path,
      jax.tree_util.tree_map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like
      ),
  )
  return np.asarray(
      policy_lib.mode(net, params, jnp.asarray(jh_image[None], jnp.float32))
  )[0]


def _polygon_record(vertices, axes) -> dict:
  v = np.asarray(vertices, np.float64)
  return dict(
      jh=v.round(6).tolist(),
      hu_gradient=np.stack([axes.x_to_hu(v[:, 0]), axes.y_to_grad(v[:, 1])], -1)
      .round(3)
      .tolist(),
  )


def run(config, workdir: str) -> dict:
  say = _Progress()
  p = config.propose
  volume = sources.load_volume(config.volume)
  say(f'volume {volume.name}: {"x".join(map(str, volume.shape))} voxels')
  ens = _ensemble(config, workdir, say)
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
  train_ids, train_images = _training_jhs(root, scene.bins)
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
  if config.agent_workdir:
    actions.append(_agent_action(config, scene.jh.image))
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
            polygon=_polygon_record(actions[i], axes),
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
    result['baselines'] = _baselines(
        config, workdir, gold_scene, scene, best, say
    )
  result['seconds'] = round(say.seconds, 1)
  with open(os.path.join(workdir, 'proposal.json'), 'w') as f:
    json.dump(result, f, indent=1)
  say(f'done: {os.path.join(workdir, "proposal.json")}')
  return result


def _baselines(config, workdir, gold_scene, scene, best, say) -> dict:
  """Inspector scores of proposal, expert, presets, median random action,
  and the side-by-side figure."""
  b = config.baselines
  volume = scene.volume
  presets = baselines.load_presets(
      b.invesalius_dir,
      tuple(b.slicer_files),
      volume_min_hu=float(np.min(volume.hu)),
      gradient_scale_mm=float(np.mean(np.asarray(volume.spacing))),
  )
  rows, median_action = baselines.baselines_rows(
      gold_scene,
      best,
      scene.experts[0],
      presets,
      config.inspector,
      jax.random.fold_in(jax.random.key(config.propose.seed), 1),
      b.num_random,
  )
  by_kind = {
      r['kind']: r
      for r in rows
      if r['kind'] in ('proposal', 'expert', 'random')
  }
  bone = [r for r in rows if r.get('group') == 'Bone CT']
  best_bone = max(bone, key=lambda r: r['score']) if bone else None
  proposal_score = by_kind['proposal']['score']
  summary = dict(
      scene=scene.scene_id,
      rows=rows,
      proposal_over_expert=proposal_score
      / max(by_kind['expert']['score'], 1e-9),
      best_invesalius_bone=best_bone,
      proposal_beats_best_bone=(
          None if best_bone is None else proposal_score >= best_bone['score']
      ),
      presets_loaded=len(presets),
  )
  with open(os.path.join(workdir, 'baselines.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(workdir, 'baselines.md'), 'w') as f:
    f.write(baselines.markdown_table([summary]))
  shown = [(by_kind['proposal'], best), (by_kind['expert'], scene.experts[0])]
  if best_bone is not None:
    tf = next(p.tf for p in presets if p.name == best_bone['name'])
    shown.append(
        (
            dict(best_bone, name=f'InVesalius {best_bone["name"]}'),
            baselines.preset_table(scene, tf),
        )
    )
  shown.append((by_kind['random'], median_action))
  figures.overview(
      [baselines.rgba_of(scene, x)[..., :3] for _, x in shown],
      [f'{r["name"]}\ninspector {r["score"]:.3f}' for r, _ in shown],
      os.path.join(workdir, 'baselines.png'),
      suptitle=f'{scene.scene_id}: proposal vs baselines',
  )
  say(
      f'baselines: proposal {proposal_score:.3f}, expert '
      f'{by_kind["expert"]["score"]:.3f}, best InVesalius bone preset '
      f'{best_bone["score"] if best_bone else float("nan"):.3f}, median '
      f'random {by_kind["random"]["score"]:.3f} ({len(presets)} presets)'
  )
  return summary
