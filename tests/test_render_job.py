"""experiments/render.py: the pre-integrated renderer of README's images."""

import os

import numpy as np
from PIL import Image

from rlhf_tf.jobs import experiment_file, JOBS


def _render(tmp_path, arg):
  config = experiment_file.load_config(
      os.path.join(os.path.dirname(__file__), '..', 'experiments', 'render.py')
      + ':'
      + arg
  )
  config.turntable = 0
  workdir = tmp_path / arg.replace(',', '_')
  workdir.mkdir()
  JOBS[config.job](config, str(workdir))
  return config, np.asarray(Image.open(workdir / 'render_0.png'))


def test_preintegrated_sets_both_settings_and_renders(tmp_path):
  point_cfg, point = _render(tmp_path, 'smoke')
  pre_cfg, pre = _render(tmp_path, 'smoke,preintegrated')
  assert not point_cfg.render.preintegrate
  assert not point_cfg.render.tensor_normals
  assert pre_cfg.render.preintegrate and pre_cfg.render.tensor_normals
  assert pre.shape == point.shape
  assert pre.any()
  # The same scene and TF by another classification: close, not identical.
  diff = np.abs(pre.astype(int) - point.astype(int))
  assert 0 < diff.mean() < 40
