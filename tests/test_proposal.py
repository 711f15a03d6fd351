"""The propose job's pieces: reward ensemble loading and its errors, the
conservative ranking, the OOD distance, baselines scored from TF tables."""

import jax
import ml_collections
import numpy as np
import pytest

from rlhf_tf.data import phantom, sample_fetch, sources
from rlhf_tf.evaluation import baselines, proposal
from rlhf_tf.export import tables
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes
from rlhf_tf.render import histogram
from rlhf_tf.reward import checkpointing, train
from rlhf_tf.reward import model as model_lib


def _tiny_reward_config(n_vertices=4):
  cfg = train.default_config()
  m = cfg.model
  m.conv_features, m.strides, m.input_pool, m.readout_pool = (
      (4, 4),
      (2, 2),
      1,
      1,
  )
  m.action_features, m.hidden, m.n_vertices = (8, 8), (8, 4), n_vertices
  return cfg


@pytest.fixture(scope='module')
def reward_workdir(tmp_path_factory):
  """A hand-made 2-seed checkpoint of a tiny model on 16-bin JHs."""
  root = tmp_path_factory.mktemp('reward_root')
  model = model_lib.model_from_config(_tiny_reward_config().model)
  keys = jax.random.split(jax.random.key(3), 2)
  params = jax.vmap(lambda k: model_lib.init_params(model, k, 16))(keys)
  params = jax.tree_util.tree_map(np.asarray, params)
  ckpt = root / 'reward' / 'ce' / 'checkpoints'
  with checkpointing.open_manager(str(ckpt)) as mngr:
    checkpointing.save(mngr, 5, params, params, {'seed_0': []})
  return str(root), model, params


def test_load_ensemble_and_rewards(reward_workdir):
  root, model, params = reward_workdir
  ens = proposal.load_ensemble(root, _tiny_reward_config(), 'ce', 16)
  assert ens.num_seeds == 2 and ens.step == 5
  jh = np.random.default_rng(0).uniform(size=(16, 16)).astype(np.float32)
  actions = np.random.default_rng(1).uniform(size=(5, 4, 2)).astype(np.float32)
  r = proposal.ensemble_rewards(ens, jh, actions)
  assert r.shape == (2, 5)
  p1 = jax.tree_util.tree_map(lambda x: x[1], params)
  want = model_lib.score(model, p1, model_lib.encode(model, p1, jh), actions)
  np.testing.assert_allclose(r[1], want, rtol=1e-5, atol=1e-6)


def test_load_ensemble_errors_say_what_differs(reward_workdir, tmp_path):
  root, _, _ = reward_workdir
  with pytest.raises(proposal.RewardWorkdirError, match='quickstart'):
    proposal.load_ensemble(str(tmp_path), _tiny_reward_config(), 'ce', 16)
  with pytest.raises(proposal.RewardWorkdirError, match="losses there: .'ce'"):
    proposal.load_ensemble(root, _tiny_reward_config(), 'nll', 16)
  with pytest.raises(
      proposal.RewardWorkdirError,
      match='histogram.bins=16 and reward.model.n_vertices=4',
  ):
    proposal.load_ensemble(root, _tiny_reward_config(), 'ce', 32)
  with pytest.raises(
      proposal.RewardWorkdirError, match='n_vertices=5.*fits.*n_vertices=4'
  ):
    proposal.load_ensemble(root, _tiny_reward_config(5), 'ce', 16)
  with pytest.raises(proposal.RewardWorkdirError, match='empty'):
    proposal.load_ensemble('', _tiny_reward_config(), 'ce', 16)


def test_conservative_rank_and_duplicates():
  square = np.array([[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]])
  actions = np.stack([square, square + 0.005, square + 0.2, square - 0.1])
  rewards = np.array([[1.0, 1.2, 0.9, 2.0], [1.0, 1.2, 0.9, 0.0]])  # [S=2, N=4]
  mean, std, cons = proposal.conservative(rewards, k=1.0)
  np.testing.assert_allclose(mean, [1.0, 1.2, 0.9, 1.0])
  np.testing.assert_allclose(cons, [1.0, 1.2, 0.9, 0.0])
  # #1 is best; #0 is a near-duplicate of it (0.005 apart) and is skipped.
  np.testing.assert_array_equal(
      proposal.rank(actions, rewards, 1.0, 3), [1, 2, 3]
  )
  np.testing.assert_array_equal(proposal.rank(actions, rewards, 0.0, 2), [1, 3])


def test_ood_distance_hand_case():
  a = np.zeros((4, 4))
  b = np.zeros((4, 4))
  b[0] = 1.0  # one row of 4 of 16 bins differs by 1
  out = proposal.ood_distance(a, [b, a + 0.5])
  assert out['per_training_scene'] == [0.25, 0.5]
  assert out['distance'] == 0.25 and out['out_of_distribution']
  assert not proposal.ood_distance(a, [a])['out_of_distribution']
  assert proposal.ood_distance(a, [])['out_of_distribution']


def test_ood_threshold_separates_phantoms_from_cranium():
  """The documented numbers: default histogram, phantom seeds 0 and 7 are
  in distribution of each other, the Cranium is not."""
  cfg = histogram.default_config()

  def jh(**vol):
    c = ml_collections.ConfigDict(
        dict(sources.default_config().to_dict(), **vol)
    )
    return histogram.from_config(sources.load_volume(c), cfg).image

  p0, p7 = jh(seed=0), jh(seed=7)
  d = proposal.jh_distance(p0, p7)
  assert 0.0 < d < proposal.OOD_THRESHOLD, d
  if not sample_fetch.cranium_path().is_file():
    pytest.skip('Cranium not fetched (.ci/fetch_cranium.sh)')
  out = proposal.ood_distance(jh(source='cranium'), [p0, p7])
  assert out['out_of_distribution'], out


@pytest.fixture(scope='module')
def small_scene():
  vol = phantom.make_head_phantom(jax.random.key(0), shape=(24, 24, 24))
  render = scenes.default_config()
  render.image_size = 16
  hist = histogram.default_config()
  hist.bins = 32
  return scenes.build_scene('p24', vol, hist, render)


def test_table_scores_match_polygon_scores(small_scene):
  """The preset path (a TF table) scores exactly like the polygon path when
  the table is the polygon's own."""
  cfg = inspector_lib.default_config()
  v = small_scene.experts[0]
  by_polygon = inspector_lib.score_actions(small_scene, v[None], cfg)[0]
  by_table = baselines.table_score(small_scene, small_scene.tf_table(v), cfg)
  assert by_table == pytest.approx(float(by_polygon), abs=1e-6)
  # A preset that is transparent everywhere scores lower than the expert.
  empty = tables.SeparableTF(
      scalar_opacity=[[0, 0]], gradient_opacity=[[0, 1]], color=[[0, 1, 1, 1]]
  )
  assert (
      baselines.table_score(
          small_scene, baselines.preset_table(small_scene, empty), cfg
      )
      < by_table
  )


def test_propose_job_names_the_missing_reward(tmp_path):
  from rlhf_tf.jobs import (
      experiment_file,  # pylint: disable=g-import-not-at-top
      propose,  # pylint: disable=g-import-not-at-top
  )

  config = experiment_file.load_config(
      f'{__file__.rsplit("/tests/", 1)[0]}/experiments/propose.py:smoke'
  )
  config.train_reward_if_missing = False
  with pytest.raises(proposal.RewardWorkdirError, match='reward_workdir'):
    propose.run(config, str(tmp_path))
  config.reward_workdir = str(tmp_path / 'nowhere')
  with pytest.raises(proposal.RewardWorkdirError, match='nowhere'):
    propose.run(config, str(tmp_path))


def test_bundle_writes_every_format(small_scene, tmp_path):
  from rlhf_tf.export import (
      bundle,  # pylint: disable=g-import-not-at-top
      nrrd_table,  # pylint: disable=g-import-not-at-top
      slicer,  # pylint: disable=g-import-not-at-top
  )

  scene = small_scene
  table = tables.polygon_table(
      scene.experts[0],
      scene.jh.axes,
      scene.bins,
      scene.tau,
      scene.alpha_max,
      scene.settings.reference_step_mm,
  )
  out = bundle.write_exports(
      str(tmp_path),
      table,
      scene.jh,
      1.5,
      bundle.shading_of(scene.settings),
      volume=scene.volume,
  )
  assert set(out['files']) == {
      'nrrd',
      'vtk_script',
      'slicer_vp_json',
      'slicer_vp',
      'paraview',
      'volume',
      'open_in_slicer',
  }
  np.testing.assert_array_equal(
      nrrd_table.read_nrrd(out['files']['nrrd']).rgba, table.rgba
  )
  sep = slicer.read_vp_json(out['files']['slicer_vp_json'])
  assert sep.gradient_scale_mm == 1.5
  assert 0.0 < out['separable']['support_iou'] <= 1.0
  assert sep.shading.specular_power == scene.settings.shininess


def test_agent_action_from_a_saved_policy(tmp_path):
  """The agent candidate: a policy checkpoint where train_agent saves it,
  read back and turned into a valid polygon (the policy's mode)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  from rlhf_tf.agent import (
      policy as policy_lib,  # pylint: disable=g-import-not-at-top
  )
  from rlhf_tf.agent import saved_policy  # pylint: disable=g-import-not-at-top

  cfg = policy_lib.default_config()
  cfg.pool_to, cfg.features, cfg.hidden = 16, (4, 4), 8
  net = policy_lib.net_from_config(cfg)
  params = policy_lib.init_params(net, jax.random.key(5), 16)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(str(tmp_path / 'agent' / 'checkpoint'), params)
  ckptr.wait_until_finished()
  config = ml_collections.ConfigDict(
      dict(agent_workdir=str(tmp_path), agent_policy=cfg)
  )
  jh = np.random.default_rng(0).uniform(size=(16, 16)).astype(np.float32)
  action = saved_policy.mode_action(config, jh)
  want = policy_lib.mode(net, params, jax.numpy.asarray(jh[None]))[0]
  np.testing.assert_allclose(action, want, atol=1e-6)
  assert action.shape == (cfg.n_vertices, 2)
  assert 0.0 <= action.min() and action.max() <= 1.0
  config.agent_workdir = str(tmp_path / 'none')
  with pytest.raises(FileNotFoundError, match='train_agent'):
    saved_policy.mode_action(config, jh)
