"""What every step of the reward evaluation reads (job `evaluate`).

``make_setup`` loads the selected reward model of each loss from
<workdir>/reward; ``scene_view`` puts it on one dataset scene with the
simulated inspector scoring at ``eval.gold_image_size``. The steps
(report_heldout.py, report_unseen.py) take the ``Setup`` and fill the
summary.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple

import numpy as np

from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward import predict


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


def make_setup(config, workdir: str) -> Setup:
  """The selected reward models of <workdir>/reward; the scene comes with
  ``scene_view``."""
  reward_dir = os.path.join(workdir, 'reward')
  out_dir = os.path.join(workdir, 'evaluation')
  if distributed.is_primary():
    os.makedirs(out_dir, exist_ok=True)
  return Setup(
      config=config,
      workdir=workdir,
      out_dir=out_dir,
      params=predict.load_selected_params(reward_dir),
      model=model_lib.model_from_config(config.reward.model),
      scene=None,
      jh=None,
      gold=None,
      mesh=mesh_lib.make_mesh(config.get('mesh')),
      primary=distributed.is_primary(),
  )


def scene_view(s: Setup, spec, out_dir: str) -> Setup:
  """``s`` on one dataset scene (registered in the store when missing),
  with the inspector scoring at gold_image_size and figures to out_dir."""
  store = dataset.open_store(s.config, s.workdir)
  try:
    scene = dataset.ensure_scene(store, spec, s.config, mesh=s.mesh).scene
  finally:
    store.close()
  if s.primary:
    os.makedirs(out_dir, exist_ok=True)
  gold_scene = scene.with_view(image_size=s.config.eval.gold_image_size)
  return s._replace(
      out_dir=out_dir,
      scene=scene,
      jh=np.asarray(scene.jh.image, np.float32),
      gold=lambda actions: inspector_lib.score_actions(
          gold_scene, actions, s.config.inspector, mesh=s.mesh
      ),
  )


def rewards_of(s: Setup, params, actions) -> np.ndarray:
  """Eval-mode rewards [N] of actions [N, n, 2] on the scene's JH."""
  return predict.predict_rewards(params, s.config.reward, s.jh, actions)
