"""The views the collect job turns a pair through (rlhf_tf/ui/scene_views.py)
on collect.py:smoke's tiny phantom: each view is the scene seen from its
azimuth, caches are built on demand and bounded, presets turn too, the
background pre-rendering fills every view and yields to a waiting browser."""

import io
import os
import threading
import time

from conftest import EXPERIMENTS
import numpy as np
from PIL import Image
import pytest
from test_ui_presets import _bone_vp_json

from rlhf_tf.jobs import collect, experiment_file
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.preferences.store import PreferenceStore
from rlhf_tf.ui import scene_views, serving


def pixels(png: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(png)), np.int32)


@pytest.fixture(scope='module')
def collected(tmp_path_factory):
  """(config, workdir, page_scenes.Scenes) of collect.py:smoke with a Slicer
  preset; one scene build for the module."""
  config = experiment_file.load_config(
      os.path.join(EXPERIMENTS, 'collect.py:smoke')
  )
  workdir = str(tmp_path_factory.mktemp('collect'))
  config.reference_presets.invesalius_dir = os.path.join(workdir, 'none')
  config.reference_presets.slicer_files = (
      _bone_vp_json(os.path.join(workdir, 'skin.vp.json'), -1000.0),
  )
  store = dataset.open_store(config, workdir)
  try:
    scenes = collect.dataset_scenes(config, store)
  finally:
    store.close()
  return config, workdir, scenes


def test_views_are_the_scene_seen_from_their_azimuths(collected):
  config, workdir, scenes = collected
  assert config.ui.azimuths == 3
  base = config.render.azimuth
  assert [v.azimuth_deg for v in scenes.views] == [base, base + 120, base + 240]
  # View 0 is today's view: its key is the simulated inspector's.
  assert scenes.views[0].render_key == scenes.render_key
  assert scenes.render_key == scenes_lib.render_key(config.render)
  assert f'az{base + 120:g}-' in scenes.views[1].render_key
  (scene_id,) = scenes.scene_ids
  with PreferenceStore(dataset.store_path(config, workdir)) as s:
    vertices = s.vertices_array(scene_id, [0])[0]
  at = [pixels(scenes.render_png(scene_id, 0, k)) for k in range(3)]
  assert np.array_equal(at[0], pixels(scenes.render_png(scene_id, 0)))
  assert all(np.abs(at[0] - at[k]).max() > 0 for k in (1, 2))
  # The image of view 1 is the scene's own renderer at that azimuth.
  store = dataset.open_store(config, workdir)
  try:
    data = dataset.ensure_scene(store, dataset.scene_specs(config)[0], config)
  finally:
    store.close()
  turned = data.scene.with_view(azimuth=base + 120)
  want = pixels(scenes_lib.png_bytes(turned.render(vertices)))
  assert np.array_equal(at[1], want)


def test_caches_are_built_once_and_bounded():
  built = []

  class Fake:
    render_cfg = dict(scenes_lib.default_config().to_dict(), azimuth=0.0)

    def with_view(self, azimuth):
      built.append(azimuth)
      return ('scene at', azimuth)

  views = scene_views.SceneViews({'s': Fake()}, 4, 2, scene_views.RenderGate())
  assert views.azimuths == (0.0, 90.0, 180.0, 270.0)
  for k in (1, 2, 1, 3, 1, 2):
    assert views.scene('s', k) == ('scene at', 90.0 * k)
  # LRU of 2: 1, 2, (1 hit), 3 evicts 2, (1 hit), 2 again.
  assert built == [90.0, 180.0, 270.0, 180.0] and views.builds == 4
  assert isinstance(views.scene('s', 0), Fake)  # view 0: the scene itself
  assert scene_views.nearest_first(12) == [1, 11, 2, 10, 3, 9, 4, 8, 5, 7, 6]
  assert scene_views.nearest_first(3) == [1, 2]
  assert scene_views.nearest_first(1) == []
  for bad in (0, 361, 2.5, True):
    with pytest.raises(ValueError, match='ui.azimuths'):
      scene_views.view_azimuths(0.0, bad)
  with pytest.raises(ValueError, match='ui.view_caches'):
    scene_views.SceneViews({'s': Fake()}, 4, 0, scene_views.RenderGate())


def test_gate_lets_a_waiting_browser_go_before_the_background():
  gate = scene_views.RenderGate()
  order, holding, release = [], threading.Event(), threading.Event()

  def first():
    with gate.foreground():
      holding.set()
      release.wait(5)
      order.append('first')

  def run(kind):
    with getattr(gate, kind)():
      order.append(kind)

  threads = [threading.Thread(target=first)]
  threads[0].start()
  holding.wait(5)
  threads.append(threading.Thread(target=run, args=('background',)))
  threads[1].start()
  time.sleep(0.1)  # the background render waits first ...
  threads.append(threading.Thread(target=run, args=('foreground',)))
  threads[2].start()
  time.sleep(0.1)
  release.set()
  for t in threads:
    t.join(5)
  assert order == ['first', 'foreground', 'background']  # ... yet goes last


def test_prerender_fills_every_view(collected):
  config, workdir, scenes = collected
  path = dataset.store_path(config, workdir)
  serving.prerender(path, scenes, threading.Event())
  with PreferenceStore(path) as s:
    (scene_id,) = scenes.scene_ids
    actions = [a.action_id for a in s.actions(scene_id)]
    for view in scenes.views:
      assert all(
          s.render_path(scene_id, a, view.render_key) is not None
          for a in actions
      )


def test_presets_turn_with_the_pair(collected):
  _, _, scenes = collected
  ((name, preset),) = scenes.presets
  (scene_id,) = scenes.scene_ids
  assert name == 'Slicer: above -1000 HU'
  at = [pixels(preset(scene_id, k)) for k in range(3)]
  assert np.array_equal(at[0], pixels(preset(scene_id)))
  assert all(float((im.max(-1) > 8).mean()) > 0.05 for im in at)
  assert all(np.abs(at[0] - at[k]).max() > 0 for k in (1, 2))
