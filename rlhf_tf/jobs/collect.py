"""Job `collect`: serve the browser preference interface to real inspectors.

  python launch.py --experiment=experiments/collect.py --workdir=DIR

Opens (or creates) the preference store, makes sure every scene of the
dataset is in it (``rlhf_tf.preferences.dataset``: the same scenes, actions
and pairs the simulate and reward experiments use, so human votes train the
reward model exactly like simulated ones; each pair within one scene), and
serves ``rlhf_tf.ui.app``
with waitress until Ctrl-C (or for ``serve_seconds``). All state is in the
store, so stopping and restarting resumes every inspector.

Renderings come from the scene's ray cache (the view is sampled once, then
each TF renders in a fraction of a second on a CPU), are made on first
request and cached in the store's image cache; ``ui.serving.prerender``
fills the cache in a background thread so inspectors rarely wait.

Turning the pair (``config.ui.azimuths``, e.g. 12; 1 = one fixed view):
each scene is also rendered from evenly spaced azimuths around it
(``rlhf_tf.ui.scene_views``: a ray cache per view, built when first needed),
and the page turns both renderings of a pair together; every vote records
the view it was cast at. The first pair shows at view 0 as soon as its two
images are rendered; the page then asks for the other views nearest first,
and those renders go before the background pre-rendering's.

Reference presets (``config.reference_presets``): the InVesalius raycasting
presets (when fetched: ``python -m rlhf_tf.export.invesalius_presets``) and
any Slicer .vp.json given become TF tables on the scene's JH grid
(``evaluation.baselines``) and are offered on the page as a reference
rendering beside the pair (``rlhf_tf.ui.image_routes``); votes stay on the
pair.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Callable, Optional

import ml_collections
import numpy as np

from rlhf_tf.evaluation import baselines, volume_figures
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import store as store_lib
from rlhf_tf.reward import predict
from rlhf_tf.ui import app as app_lib
from rlhf_tf.ui import auth, page_scenes, serving


def dataset_scenes(config, store) -> page_scenes.Scenes:
  """The dataset's scenes for the page (rlhf_tf.ui.page_scenes), with the
  JH figure and the reference presets of evaluation/."""
  return page_scenes.dataset_scenes(
      config,
      store,
      volume_figures.jh_polygons_png,
      functools.partial(reference_presets, config),
  )


def reference_presets(config, scene, views=None) -> tuple:
  """(label, (scene_id, view) -> PNG) per preset of config.reference_presets
  (see the module docstring; None or not enabled: none)."""
  cfg = config.get('reference_presets')
  if cfg is None or not cfg.enabled:
    return ()
  volume = scene.volume
  presets = baselines.load_presets(
      cfg.invesalius_dir,
      tuple(cfg.slicer_files),
      volume_min_hu=float(np.min(volume.hu)),
      gradient_scale_mm=float(np.mean(np.asarray(volume.spacing))),
  )
  return page_scenes.preset_renderers(
      presets, scene, views, baselines.preset_table, baselines.rgba_of
  )


def load_ensemble_rewards(config, store_file: str) -> Optional[Callable]:
  """scene_id -> [M, A] rewards for selection='disagreement': from trained
  reward checkpoints (``ensemble_reward_workdir``, all seeds of one loss) or
  from an .npy file (``ensemble_rewards_path``)."""
  if config.ensemble_reward_workdir:
    cache = {}

    def from_checkpoints(scene_id):
      if scene_id not in cache:
        store = store_lib.PreferenceStore(store_file)
        try:
          cache[scene_id] = predict.every_seed_scene_rewards(
              os.path.join(config.ensemble_reward_workdir, 'reward'),
              config.ensemble_loss,
              config.reward,
              store,
              scene_id,
          )
        finally:
          store.close()
      return cache[scene_id]

    return from_checkpoints
  if not config.ensemble_rewards_path:
    if config.selection == 'disagreement':
      raise ValueError(
          "selection='disagreement' needs ensemble_reward_workdir"
          ' (trained reward checkpoints) or ensemble_rewards_path'
          ' (an .npy [M models, A actions] array)'
      )
    return None
  rewards = np.load(config.ensemble_rewards_path)
  if rewards.ndim != 2:
    raise ValueError(
        f'{config.ensemble_rewards_path}: expected [M, A], got '
        f'{rewards.shape}'
    )
  return lambda scene_id: rewards


def run(config: ml_collections.ConfigDict, workdir: str):
  """Prepare the scenes, then serve the preference UI until interrupted."""
  path = dataset.store_path(config, workdir)
  store = store_lib.PreferenceStore(path)
  scenes = dataset_scenes(config, store)
  store.close()
  keys = auth.keys_for_store(path, config.inspectors)
  app = app_lib.create_app(
      path,
      scenes.render_png,
      keys,
      scene_ids=list(scenes.scene_ids),
      jh_png=scenes.jh_png,
      votes_target=config.votes_target,
      lease_seconds=config.lease_seconds,
      overlap=config.overlap,
      seed=config.seed,
      selection=config.selection,
      ensemble_rewards=load_ensemble_rewards(config, path),
      presets=scenes.presets,
      views=scenes.views,
  )
  stop = threading.Event()
  if config.prerender:
    threading.Thread(
        target=serving.prerender,
        args=(path, scenes, stop),
        daemon=True,
        name='prerender',
    ).start()
  print(
      f'store: {path}, scenes {", ".join(scenes.scene_ids)} (render key '
      f'{scenes.render_key}; {len(scenes.views)} views)',
      flush=True,
  )
  try:
    if config.serve_seconds > 0:
      serving.serve_for(app, config, config.serve_seconds, keys)
    else:
      serving.print_links(keys, config.host, config.port)
      app_lib.serve(app, config.host, config.port, config.threads)
  finally:
    stop.set()
