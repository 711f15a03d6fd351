"""Job `render`: actions -> PNG renderings, the JH with the polygon, turntables.

Actions come from ``config.actions_file`` (JSON: a list of polygons, each a
list of [x, y] in JH coordinates), else ``config.polygons``, else the scene's
built-in expert action (a polygon around the bone and teeth clusters of the
JH; rlhf_tf.preferences.experts). Writes per action i to the workdir:
render_<i>.png, jh_<i>.png (the JH in HU and HU/mm with the polygon) and,
with ``config.turntable`` = N > 0, turntable_<i>.gif (N azimuths, rendered
by ``rlhf_tf.render.turntable``: one compiled program for every view).
"""

from __future__ import annotations

import json
import os

from absl import logging
import numpy as np
from PIL import Image

from rlhf_tf.data import sources
from rlhf_tf.evaluation import volume_figures
from rlhf_tf.input_error import ConfigError
from rlhf_tf.preferences import experts as experts_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.render import polygon_validation
from rlhf_tf.render import turntable as turntable_lib


def _actions(config, scene) -> np.ndarray:
  if config.actions_file:
    return experts_lib.load_expert_actions(config.actions_file)
  if config.polygons:
    out = [
        polygon_validation.validate_polygon(p, name=f'config.polygons[{i}]')
        for i, p in enumerate(config.polygons)
    ]
    if len({len(v) for v in out}) > 1:
      raise ConfigError(
          'config.polygons: every polygon needs the same ' 'number of vertices'
      )
    return np.asarray(out, np.float32)
  return scene.experts[:1]


def turntable_cameras(scene, table_source, num_views: int) -> list:
  """Cameras of num_views azimuths around the head (the scene's size,
  elevation and zoom), for table_source (a turntable.Turntable)."""
  cfg = scene.render_cfg
  return [
      table_source.camera(cfg['image_size'], az, cfg['elevation'], cfg['zoom'])
      for az in turntable_lib.turntable_azimuths(cfg['azimuth'], num_views)
  ]


def run(config, workdir: str) -> list:
  if not 0 <= config.turntable <= 360:
    raise ConfigError(
        f'turntable must be a number of views in [0, 360] '
        f'(0 = none); got {config.turntable}'
    )
  volume = sources.load_volume(config.volume)
  scene = scenes_lib.build_scene(
      volume.name, volume, config.histogram, config.render
  )
  actions = _actions(config, scene)
  views, spin = [], None
  if config.turntable:
    # The direct renderer from every azimuth: one compiled program for all
    # views and actions (a ray cache per view pays off for many TFs).
    spin = turntable_lib.Turntable(volume, scene.jh.axes, scene.settings)
    views = turntable_cameras(scene, spin, config.turntable)
  written = []
  for i, vertices in enumerate(actions):
    png = os.path.join(workdir, f'render_{i}.png')
    Image.fromarray(scenes_lib.rgb_uint8(scene.render(vertices))).save(png)
    written += [
        png,
        volume_figures.jh_with_polygon_png(
            scene.jh, vertices, os.path.join(workdir, f'jh_{i}.png')
        ),
    ]
    if views:
      frames = spin.frames(scene.tf_table(vertices), views)
      logging.info('turntable of action %d: %d views', i, len(views))
      gif = os.path.join(workdir, f'turntable_{i}.gif')
      Image.fromarray(frames[0]).save(
          gif,
          save_all=True,
          append_images=[Image.fromarray(f) for f in frames[1:]],
          duration=120,
          loop=0,
      )
      written.append(gif)
  with open(os.path.join(workdir, 'actions.json'), 'w') as f:
    json.dump(np.asarray(actions).tolist(), f)
  print('\n'.join(written))
  return written
