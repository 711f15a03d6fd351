"""Evaluation figures: each writes a valid PNG; bad inputs fail clearly."""

import os
import threading

import numpy as np
import pytest

from rlhf_tf.evaluation import (
    figures,
    figures_calibration,
    figures_probing,
    figures_style,
)
from rlhf_tf.render.histogram import JHAxes, JointHistogram

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
N, G, B = 4, 16, 32
EXPERT = np.array([[0.55, 0.05], [0.95, 0.05], [0.9, 0.55], [0.6, 0.45]])


def _assert_png(path, min_kb=10):
  assert os.path.isfile(path)
  with open(path, 'rb') as f:
    assert f.read(8) == PNG_MAGIC
  assert os.path.getsize(path) > min_kb * 1024


def _jh(rng):
  return rng.rand(B, B).astype(np.float32) ** 3


def _render(rng, q, size=24, dtype=np.float32):
  img = np.clip(q + 0.3 * rng.rand(size, size, 3), 0, 1)
  return (img * 255).astype(np.uint8) if dtype == np.uint8 else img


def _maps(rng):
  c = (np.arange(G) + 0.5) / G
  x, y = np.meshgrid(c, c)
  return np.stack(
      [np.exp(-((x - vx) ** 2 + (y - vy) ** 2) / 0.02) for vx, vy in EXPERT]
  ) + 0.05 * rng.rand(N, G, G)


def test_reward_histograms(tmp_path):
  rng = np.random.RandomState(0)
  ce = rng.gamma(1.0, 0.8, 20000) - 3.0
  nll = rng.gamma(2.5, 0.7, 20000) - 2.0
  path = figures.reward_histograms(
      {'ce': ce, 'nll': nll},
      str(tmp_path / 'sub' / 'fig2.png'),
      expert_rewards_by_loss={'ce': [2.0, 2.2], 'nll': 2.8},
      stats_by_loss={
          'ce': {'skewness': 2.0, 'expert_z': 5.3, 'mean': 0.1},
          'nll': {'top-decile width': 0.9},
      },
  )
  assert path == str(tmp_path / 'sub' / 'fig2.png')
  _assert_png(path)
  _assert_png(
      figures.reward_histograms(
          {'ce': ce}, tmp_path / 'lin.png', log_counts=False
      )
  )


def test_reward_histograms_bad_inputs(tmp_path):
  p = str(tmp_path / 'x.png')
  with pytest.raises(ValueError, match='non-empty dict'):
    figures.reward_histograms({}, p)
  with pytest.raises(ValueError, match='empty'):
    figures.reward_histograms({'ce': []}, p)
  with pytest.raises(ValueError, match='non-finite'):
    figures.reward_histograms({'ce': [1.0, np.nan]}, p)
  with pytest.raises(ValueError, match='without rewards'):
    figures.reward_histograms(
        {'ce': [1.0, 2.0]}, p, expert_rewards_by_loss={'nll': 1.0}
    )
  assert not os.path.exists(p)


def test_corner_plots_with_renders(tmp_path):
  rng = np.random.RandomState(1)
  maps = {'ce': _maps(rng), 'nll': 0.5 * _maps(rng)}
  renders = {
      loss: [
          (lab, xy, r, _render(rng, q))
          for lab, xy, r, q in [
              ('low', (0.2, 0.8), -1.0, 0.1),
              ('medium', (0.5, 0.3), 0.2, 0.4),
              ('high', (0.6, 0.45), 1.0, 0.7),
          ]
      ]
      for loss in maps
  }
  path = figures_probing.corner_plots(
      maps,
      _jh(rng),
      EXPERT,
      str(tmp_path / 'fig3.png'),
      renders_by_loss=renders,
  )
  _assert_png(path, min_kb=50)


def test_corner_plots_physical_units_and_joint_histogram(tmp_path):
  rng = np.random.RandomState(2)
  axes = JHAxes(hu_min=-1000.0, hu_max=3000.0, grad_max=1500.0)
  jh = JointHistogram(
      image=_jh(rng), counts=np.ones((B, B), np.int64), axes=axes
  )
  maps = _maps(rng)
  maps[0, :2] = np.nan  # not evaluated
  _assert_png(
      figures_probing.corner_plots(
          {'ce': maps}, jh, EXPERT, str(tmp_path / 'hu.png')
      )
  )


def test_corner_plots_bad_inputs(tmp_path):
  rng = np.random.RandomState(3)
  p, jh = str(tmp_path / 'x.png'), _jh(rng)
  with pytest.raises(ValueError, match=r'\[n=4, G, G\]'):
    figures_probing.corner_plots({'ce': _maps(rng)[:3]}, jh, EXPERT, p)
  with pytest.raises(ValueError, match=r'\[n=4, G, G\]'):
    figures_probing.corner_plots({'ce': _maps(rng)[:, :, :-1]}, jh, EXPERT, p)
  with pytest.raises(ValueError, match='no finite'):
    figures_probing.corner_plots(
        {'ce': np.full((N, G, G), np.nan)}, jh, EXPERT, p
    )
  with pytest.raises(ValueError, match=r'\[B, B\]'):
    figures_probing.corner_plots({'ce': _maps(rng)}, jh[0], EXPERT, p)
  with pytest.raises(ValueError, match=r'\[n, 2\]'):
    figures_probing.corner_plots({'ce': _maps(rng)}, jh, EXPERT[:, :1], p)
  with pytest.raises(ValueError, match='without a map'):
    figures_probing.corner_plots(
        {'ce': _maps(rng)},
        jh,
        EXPERT,
        p,
        renders_by_loss={'nll': [('a', (0, 0), 0.0, _render(rng, 0.5))]},
    )
  with pytest.raises(ValueError, match='label'):
    figures_probing.corner_plots(
        {'ce': _maps(rng)},
        jh,
        EXPERT,
        p,
        renders_by_loss={'ce': [('a', (0, 0), 0.0)]},
    )
  with pytest.raises(ValueError, match='render_vertex'):
    figures_probing.corner_plots(
        {'ce': _maps(rng)}, jh, EXPERT, p, render_vertex=4
    )


def test_evaluation_grid_and_grids(tmp_path):
  rng = np.random.RandomState(4)
  gold = rng.rand(12)
  images = np.stack([_render(rng, q, dtype=np.uint8) for q in gold])
  rgba = np.concatenate([images / 255.0, np.ones((12, 24, 24, 1))], -1)
  _assert_png(
      figures.evaluation_grid(
          rgba,
          3 * gold,
          gold,
          str(tmp_path / 'ce.png'),
          figures_style.loss_label('ce'),
      )
  )
  _assert_png(
      figures.evaluation_grids(
          images,
          {'ce': 3 * gold, 'nll': rng.randn(12)},
          gold,
          str(tmp_path / 'fig4.png'),
          labels=[f'TF {i}' for i in range(12)],
      )
  )


def test_evaluation_grid_bad_inputs(tmp_path):
  rng = np.random.RandomState(5)
  p = str(tmp_path / 'x.png')
  images = [_render(rng, 0.5) for _ in range(12)]
  with pytest.raises(ValueError, match='needs 12 images, got 11'):
    figures.evaluation_grid(images[:11], np.zeros(11), np.zeros(11), p, 't')
  with pytest.raises(ValueError, match='12 rewards'):
    figures.evaluation_grid(images, np.zeros(11), np.zeros(12), p, 't')
  with pytest.raises(ValueError, match='12 labels'):
    figures.evaluation_grid(
        images, np.zeros(12), np.zeros(12), p, 't', labels=['a']
    )
  with pytest.raises(ValueError, match=r'images\[3\]'):
    bad = list(images)
    bad[3] = np.zeros((24, 24))
    figures.evaluation_grid(bad, np.zeros(12), np.zeros(12), p, 't')
  with pytest.raises(ValueError, match='needs 12 images'):
    figures.evaluation_grids(images[:11], {'ce': np.zeros(12)}, np.zeros(12), p)


def test_reliability_diagram_both_ranges(tmp_path):
  edges = np.linspace(0.0, 1.0, 11)
  centres = (edges[:-1] + edges[1:]) / 2
  count = np.array([0, 0, 0, 0, 0, 900, 700, 400, 0, 100])
  conf = np.where(count > 0, centres, np.nan)
  # [0, 1] bins with confidences >= 1/2 (metrics.expected_calibration_error)
  ce = {
      'edges': edges,
      'confidence': conf,
      'accuracy': conf - 0.05,
      'count': count,
  }
  # 5 equal-width bins over [0.5, 1] inferred, alternative key names
  c5 = np.linspace(0.55, 0.95, 5)
  nll = {'conf': c5, 'acc': c5 - 0.1, 'counts': [50, 40, 30, 20, 10]}
  # full [0, 1] probabilities
  p10 = {
      'confidence': centres,
      'accuracy': centres**1.2,
      'count': np.full(10, 100),
  }
  _assert_png(
      figures_calibration.reliability_diagram(
          {'ce': ce, 'nll': nll, 'p': p10},
          str(tmp_path / 'rel.png'),
          ece_by_loss={'ce': 0.05},
      )
  )


def test_reliability_diagram_bad_inputs(tmp_path):
  p = str(tmp_path / 'x.png')
  with pytest.raises(ValueError, match='same non-zero length'):
    figures_calibration.reliability_diagram(
        {'ce': {'confidence': [0.6, 0.7], 'accuracy': [0.6], 'count': [1, 2]}},
        p,
    )
  with pytest.raises(ValueError, match='needs one of the keys'):
    figures_calibration.reliability_diagram({'ce': {'confidence': [0.6]}}, p)
  with pytest.raises(ValueError, match='not all zero'):
    figures_calibration.reliability_diagram(
        {'ce': {'confidence': [0.6], 'accuracy': [0.6], 'count': [0]}}, p
    )
  with pytest.raises(ValueError, match='increasing edges'):
    figures_calibration.reliability_diagram(
        {
            'ce': {
                'confidence': [0.6, 0.8],
                'accuracy': [0.6, 0.8],
                'count': [1, 2],
                'edges': [0.5, 1.0],
            }
        },
        p,
    )


def test_gradient_arrows(tmp_path):
  rng = np.random.RandomState(6)
  grad = rng.randn(N, 2)
  grad[0] = 0.0  # a zero gradient draws no arrow
  ascent = EXPERT[None] + 0.03 * rng.randn(5, N, 2)
  _assert_png(
      figures_probing.gradient_arrows(
          _jh(rng), EXPERT, grad, str(tmp_path / 'g.png'), ascent_actions=ascent
      )
  )
  _assert_png(
      figures_probing.gradient_arrows(
          _jh(rng),
          EXPERT,
          grad,
          str(tmp_path / 'g_hu.png'),
          axes=JHAxes(hu_min=-1000.0, hu_max=3000.0, grad_max=1500.0),
          ascent_actions=ascent[0],
      )
  )


def test_gradient_arrows_bad_inputs(tmp_path):
  rng = np.random.RandomState(7)
  p = str(tmp_path / 'x.png')
  with pytest.raises(ValueError, match='shape of action'):
    figures_probing.gradient_arrows(_jh(rng), EXPERT, np.zeros((3, 2)), p)
  with pytest.raises(ValueError, match='non-finite'):
    figures_probing.gradient_arrows(
        _jh(rng), EXPERT, np.full((N, 2), np.inf), p
    )
  with pytest.raises(ValueError, match=r'\[m, n, 2\]'):
    figures_probing.gradient_arrows(
        _jh(rng), EXPERT, np.ones((N, 2)), p, ascent_actions=np.zeros((2, N, 3))
    )


def test_overview(tmp_path):
  rng = np.random.RandomState(8)
  imgs = [
      _render(rng, 0.2),
      _render(rng, 0.5, dtype=np.uint8),
      np.concatenate([_render(rng, 0.8), np.ones((24, 24, 1))], -1),
  ]
  _assert_png(
      figures.overview(
          imgs,
          ['random', 'expert', 'agent'],
          str(tmp_path / 'o.png'),
          suptitle='demo',
      ),
      min_kb=5,
  )
  _assert_png(
      figures.overview(
          imgs * 2, list('abcdef'), str(tmp_path / 'o2.png'), ncols=3
      ),
      min_kb=5,
  )
  with pytest.raises(ValueError, match='one title per image'):
    figures.overview(imgs, ['a'], str(tmp_path / 'x.png'))
  with pytest.raises(ValueError, match='at least one'):
    figures.overview([], [], str(tmp_path / 'x.png'))


def test_figures_can_be_drawn_from_threads(tmp_path):
  rng = np.random.RandomState(9)
  rewards = {'ce': rng.randn(2000), 'nll': rng.randn(2000)}
  errors, paths = [], []

  def work(i):
    try:
      paths.append(
          figures.reward_histograms(rewards, str(tmp_path / f'{i}.png'))
      )
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors
  for p in paths:
    _assert_png(p)


def test_style_helpers():
  assert figures_style.loss_color('ce') != figures_style.loss_color('nll')
  assert 'ties kept' in figures_style.loss_label('ce')
  assert figures_style.loss_label('other') == 'other'
  a = figures_style.as_rgb(np.full((2, 2, 4), 255, np.uint8))
  assert a.shape == (2, 2, 3) and a.dtype == np.float32 and a.max() == 1.0
  axes = JHAxes(hu_min=-1000.0, hu_max=3000.0, grad_max=1500.0)
  np.testing.assert_allclose(
      figures_style.to_plot([[0.5, 0.2]], axes), [[1000.0, 300.0]]
  )
