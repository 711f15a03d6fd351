"""The quickstart (smoke) writes every figure and number of the evaluation.

tests/test_experiments.py runs every other experiment's ':smoke' in process.
quickstart.py's runs as a user runs it, through launch.py, in
tests/test_multiprocess_launch.py (one process, and two that must agree with
it); both runs' workdirs get the checks below, check_quickstart_outputs.
"""

import json
import os
from pathlib import Path

from rlhf_tf.jobs import evaluate

FIGURES = (
    'fig2_reward_histograms.png',
    'fig3_corner_plots.png',
    'fig4_evaluation_tfs.png',
    'reliability.png',
    'probing_gradients.png',
    'ties_closer.png',
)


def check_quickstart_outputs(workdir: Path) -> None:
  """Asserts that a workdir of experiments/quickstart.py:smoke holds every
  figure and number of the evaluation."""
  out = workdir / 'evaluation'
  for name in FIGURES:
    path = out / name
    assert path.exists(), name
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name
    assert os.path.getsize(path) > 20_000, name
  summary = json.loads((out / 'summary.json').read_text())
  tie_nu = json.loads((workdir / 'reward' / 'summary.json').read_text())[
      'selected'
  ]['davidson']['final']['tie_nu']
  for loss in ('ce', 'nll', 'davidson'):
    s = summary[loss]
    ties = s['heldout_ties']
    assert 0.0 <= ties['three_way_accuracy'] <= 1.0
    assert 0.0 <= ties['pickscore_accuracy'] <= 1.0
    assert (
        ties['num_validation'] + ties['num_test'] == s['heldout']['num_pairs']
    )
    assert 0.0 <= ties['ties_closer']['share_below_median'] <= 1.0
    # L_D brings its learned nu; L_C and L_L get one fitted on validation.
    assert ties['tie_nu_fitted_on_validation'] == (loss != 'davidson')
    if loss == 'davidson':
      assert ties['tie_nu'] == tie_nu
    # Every seed's numbers; the selected seed's are the ones above.
    spread = s['heldout_ties_every_seed']['three_way_accuracy']
    assert len(spread['by_seed']) == 2  # :smoke trains 2 seeds
    assert spread['min'] <= ties['three_way_accuracy'] <= spread['max']
    assert ties['three_way_accuracy'] in spread['by_seed'].values()
    assert 0.0 <= s['heldout']['accuracy'] <= 1.0
    assert 0.0 <= s['heldout']['ece'] <= 1.0
    assert -1.0 <= s['rank_correlation']['spearman_rho'] <= 1.0
    assert 0.0 <= s['sharpness']['share_above_expert_mean'] <= 1.0
    assert (
        s['probing']['ascent_final_mean_reward']
        >= s['probing']['ascent_start_mean_reward']
    )
    assert len(s['probing']['grad_at_expert']) == 4
  assert len(summary['image_space_gradient']['grad']) == 4


def test_evaluate_covers_every_scene_of_the_dataset(tmp_path, smoke_config):
  """A dataset of two phantoms: each scene gets its figures in its own
  folder and its numbers under 'scenes' (means in 'scene_mean'); the
  held-out pairs are split by scene too."""
  config = smoke_config('evaluate')
  config.scenes = 'phantom:0+1'
  config.reward.losses = ('ce',)
  summary = evaluate.evaluate(config, str(tmp_path))
  ids = ['phantom-s0-24x24x24', 'phantom-s1-24x24x24']
  assert sorted(summary['scenes']) == ids
  out = tmp_path / 'evaluation'
  for scene_id in ids:
    for name in FIGURES[:3] + ('probing_gradients.png',):
      assert (out / scene_id / name).read_bytes()[:4] == b'\x89PNG', name
  for name in ('reliability.png', 'summary.json'):
    assert (out / name).exists()
  rhos = [
      summary['scenes'][s]['ce']['rank_correlation']['spearman_rho']
      for s in ids
  ]
  assert summary['scene_mean']['ce']['spearman_rho'] == sum(rhos) / 2
  assert rhos[0] != rhos[1]  # two scenes, two different sets of scores
  by_scene = summary['ce']['heldout_by_scene']
  assert (
      sum(v['num_pairs'] for v in by_scene.values())
      == summary['ce']['heldout']['num_pairs']
  )
  written = json.loads((out / 'summary.json').read_text())
  assert sorted(written['scenes']) == ids
