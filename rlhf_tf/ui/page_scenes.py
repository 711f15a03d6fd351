"""The dataset's scenes as the preference page shows them.

``dataset_scenes`` registers every scene of the dataset config in the store
(``rlhf_tf.preferences.dataset``: the same scenes, actions and pairs the
simulate and reward experiments use) and returns the callbacks the app
(rlhf_tf.ui.app) takes: a pair's renderings at every view
(``rlhf_tf.ui.scene_views``), its two polygons on the JH, and the reference
presets beside the pair (``preset_renderers``). The JH figure and the preset
tables come from evaluation/ as callables (ui/ sits below it in the import
direction); the collect job (rlhf_tf/jobs/collect.py) passes them in.
"""

from __future__ import annotations

import threading
from typing import Callable, NamedTuple, Sequence

from absl import logging
import ml_collections

from rlhf_tf.preferences import dataset
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.preferences import store as store_lib
from rlhf_tf.ui import scene_views

LEFT_COLOR, RIGHT_COLOR = '#ff9d2e', '#38b6ff'  # match the page's CSS


class Scenes(NamedTuple):
  """What the app needs to show the dataset's scenes."""

  scene_ids: tuple
  # (scene_id, action_id, view[, background]) -> PNG
  render_png: Callable[..., bytes]
  render_key: str  # of view 0
  jh_png: Callable[[str, int, int], bytes]  # (scene_id, left, right)
  # (name, (scene_id, view) -> PNG) of the reference presets (see module
  # docstring)
  presets: tuple = ()
  views: tuple = ()  # app_state.View per view: azimuth, render key


def dataset_scenes(
    config,
    store,
    jh_polygons_png: Callable[..., bytes],
    presets_of: Callable[..., tuple],
) -> Scenes:
  """Every scene of the dataset config (registered in the store when
  missing, exactly as the simulate / reward experiments do) with render,
  JH and preset callbacks that take the scene id.

  jh_polygons_png: (JH image [B, B], [vertices [n, 2]] * 2, colors, size px)
  -> PNG, the two polygons of a pair on the JH (evaluation.volume_figures).
  presets_of: (scene, SceneViews) -> the scene's reference presets, as
  ``preset_renderers`` returns them.

  Renders are cached under ``scenes.render_key(config.render)``, the key the
  simulated inspector's job uses, so a store it filled shows at once; the
  other views of ``config.ui.azimuths`` under the keys of their azimuths.
  """
  ui = config.get('ui') or ml_collections.ConfigDict(
      dict(azimuths=1, view_caches=1)
  )
  scene_views.check_config(ui)  # before the minutes of building scenes
  built = {
      spec.scene_id: dataset.ensure_scene(store, spec, config).scene
      for spec in dataset.scene_specs(config)
  }
  path = store.path
  local = threading.local()
  views = scene_views.SceneViews(
      built,
      ui.azimuths,
      ui.view_caches,
      scene_views.RenderGate(),  # one render at a time: each uses every core
  )

  def vertices(scene_id, action_id):
    s = getattr(local, 'store', None)  # SQLite: one connection per thread
    if s is None:
      s = local.store = store_lib.PreferenceStore(path)
    return s.vertices_array(scene_id, [action_id])[0]

  def render_png(scene_id, action_id, view=0, background=False):
    return views.render_png(
        scene_id, vertices(scene_id, action_id), view, background
    )

  def jh_png(scene_id, left, right):
    return jh_polygons_png(
        built[scene_id].jh.image,
        [vertices(scene_id, left), vertices(scene_id, right)],
        [LEFT_COLOR, RIGHT_COLOR],
        300,
    )

  # Each scene's presets (their tables depend on its volume), by name.
  per_scene = {
      scene_id: dict(presets_of(scene, views))
      for scene_id, scene in built.items()
  }
  names = list(next(iter(per_scene.values())))

  def preset_renderer(name):
    return lambda scene_id, view=0: per_scene[scene_id][name](scene_id, view)

  first = next(iter(built))
  return Scenes(
      tuple(built),
      render_png,
      views.render_key(first, 0),
      jh_png,
      tuple((name, preset_renderer(name)) for name in names),
      views.app_views(first),
  )


def preset_renderers(
    presets: Sequence,
    scene,
    views,
    preset_table: Callable,
    rgba_of: Callable,
) -> tuple:
  """(label, (scene_id, view) -> PNG) per preset (name, kind, tf): the
  preset's TF table on the scene's JH grid (``preset_table(scene, tf)``),
  rendered (``rgba_of(scene, table)`` -> RGBA image) with the lighting and
  view (``views``: a SceneViews holding the scene; None: its own view only)
  the pair is shown at (``evaluation.baselines``)."""
  views = views or scene_views.SceneViews(
      {scene.scene_id: scene}, 1, 1, scene_views.RenderGate()
  )
  kinds = dict(invesalius='InVesalius', slicer='Slicer')

  def renderer(preset):
    table = []  # the TF table on the scene's JH: once, for every view

    def at_view(seen):
      if not table:
        table.append(preset_table(scene, preset.tf))
      return scenes_lib.png_bytes(rgba_of(seen, table[0]))

    def preset_png(scene_id, view=0):
      del scene_id  # this scene's renderer (dataset_scenes picks it)
      return views.render_with(scene.scene_id, view, at_view)

    return preset_png

  logging.info('%d reference presets for the page', len(presets))
  labels = []
  for p in presets:  # two files may name their TF alike: keep both apart
    label = base = f'{kinds.get(p.kind, p.kind)}: {p.name}'
    while label in labels:
      label = f'{base} ({sum(x.startswith(base) for x in labels) + 1})'
    labels.append(label)
  return tuple((label, renderer(p)) for label, p in zip(labels, presets))
