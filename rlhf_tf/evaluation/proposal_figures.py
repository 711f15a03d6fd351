"""Figures of a proposal: candidate polygons on the JH, the turntable GIF."""

from __future__ import annotations

from typing import Sequence

from absl import logging
import numpy as np
from PIL import Image

from rlhf_tf.evaluation import figures_style
from rlhf_tf.render import turntable as turntable_lib

_COLORS = ('#38b6ff', '#ffd166', '#06d6a0', '#ef476f', '#ffffff', '#8338ec')


def polygons_on_jh(
    jh, polygons: Sequence, labels: Sequence[str], path: str
) -> str:
  """The JH in HU x HU/mm with each polygon outlined and labelled."""
  fig = figures_style.new_figure(5.6, 4.6)
  ax = fig.add_subplot()
  figures_style.draw_jh_image(
      ax, jh, cmap='magma', title='proposed TFs on the joint histogram'
  )
  a = jh.axes
  for i, (v, label) in enumerate(zip(polygons, labels)):
    v = np.asarray(v, np.float64)
    xy = np.stack([a.x_to_hu(v[:, 0]), a.y_to_grad(v[:, 1])], axis=-1)
    closed = np.concatenate([xy, xy[:1]])
    ax.plot(
        closed[:, 0],
        closed[:, 1],
        '-o',
        color=_COLORS[i % len(_COLORS)],
        lw=2 if i == 0 else 1.2,
        ms=3,
        label=label,
    )
  ax.legend(fontsize=figures_style.SMALL_SIZE, loc='upper right')
  return figures_style.save_figure(fig, path)


def turntable_gif(
    scene, vertices, num_views: int, image_size: int, path: str
) -> str:
  """A GIF of the TF seen from ``num_views`` azimuths around the head.

  The direct raymarcher through ``turntable.Turntable`` (one compiled
  program for every view, empty-space skipping and early termination; a ray
  cache per view would cost a cache build each) with the scene's settings,
  tilt and zoom.
  """
  cfg = scene.render_cfg
  spin = turntable_lib.Turntable(scene.volume, scene.jh.axes, scene.settings)
  cameras = [
      spin.camera(image_size, az, cfg['elevation'], cfg['zoom'])
      for az in turntable_lib.turntable_azimuths(cfg['azimuth'], num_views)
  ]
  frames = [
      Image.fromarray(f) for f in spin.frames(scene.tf_table(vertices), cameras)
  ]
  logging.info('turntable: %d views', num_views)
  frames[0].save(
      path, save_all=True, append_images=frames[1:], duration=150, loop=0
  )
  return path
