"""Turntables reuse one compiled direct renderer for every view and TF."""

import numpy as np
from render_testing import AXES, random_table, smooth_volume, SPACING

from rlhf_tf.data.volume import make_volume
from rlhf_tf.render import raymarch, render_settings, turntable

SETTINGS = render_settings.RenderSettings(step_mm=1.1, tile_rays=16)


def _turntable():
  hu = np.asarray(smooth_volume((8, 10, 9)))
  return turntable.Turntable(make_volume(hu, SPACING), AXES, SETTINGS)


def test_azimuths_go_once_around():
  az = turntable.turntable_azimuths(30.0, 4)
  assert az == [30.0, 120.0, 210.0, 300.0]


def test_views_after_the_first_compile_nothing_and_match_render():
  spin = _turntable()
  cams = [spin.camera(12, az, 15.0, 1.2) for az in (0.0, 120.0, 240.0)]
  table = random_table()
  spin.frames(table, cams[:1])
  compiled = raymarch._render._cache_size()  # pylint: disable=protected-access
  frames = spin.frames(random_table(seed=1), cams)
  assert raymarch._render._cache_size() == compiled  # pylint: disable=protected-access
  assert len(frames) == 3 and frames[0].shape == (12, 12, 3)
  assert frames[0].dtype == np.uint8
  # Frames differ between views and equal the exact renderer within its
  # skipping / termination bound (2e-3, under one 8-bit level).
  assert np.abs(frames[0].astype(int) - frames[1]).max() > 0
  exact = raymarch.render(
      spin.volume.hu,
      None,
      SPACING,
      AXES,
      random_table(seed=1),
      cams[1],
      SETTINGS.replace(skip_empty_space=False, termination_transmittance=0.0),
  )
  want = np.round(np.clip(np.asarray(exact)[..., :3], 0, 1) * 255)
  assert np.abs(frames[1] - want).max() <= 1
