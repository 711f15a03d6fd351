"""The ties-are-closer figure writes a valid PNG; bad inputs fail clearly."""

import os

import numpy as np
import pytest

from rlhf_tf.evaluation import figures_ties


def test_ties_closer_figure(tmp_path):
  rng = np.random.default_rng(0)
  t = rng.choice([0.0, 0.5, 1.0], size=300, p=[0.4, 0.2, 0.4])
  close = rng.normal(scale=0.3, size=300)
  far = rng.normal(scale=3.0, size=300)
  deltas = {
      'ce': np.where(t == 0.5, close, far),
      'nll': rng.normal(scale=2.0, size=300),  # ties not closer
      'davidson': 5.0 * np.where(t == 0.5, close, far),
  }
  path = figures_ties.ties_closer(deltas, t, tmp_path / 'ties.png')
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert os.path.getsize(path) > 20_000
  with pytest.raises(ValueError, match='needs tied and untied'):
    figures_ties.ties_closer(deltas, np.ones(300), tmp_path / 'x.png')
  with pytest.raises(ValueError, match="delta_by_loss\\['ce'\\] has 3"):
    figures_ties.ties_closer({'ce': np.ones(3)}, t, tmp_path / 'x.png')
