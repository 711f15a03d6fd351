"""Every experiment file runs end to end with ':smoke'; launch.py's errors."""

import glob
import json
import os
import subprocess
import sys

import pytest

from rlhf_tf.jobs import experiment_file, JOBS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(glob.glob(os.path.join(ROOT, 'experiments', '*.py')))
# quickstart.py's smoke run goes through launch.py in
# tests/test_multiprocess_launch.py, with tests/test_quickstart_outputs.py's
# checks of its outputs: run it once.
SMOKE_RUN_ELSEWHERE = ('quickstart.py',)
SMOKE = [
    p for p in EXPERIMENTS if os.path.basename(p) not in SMOKE_RUN_ELSEWHERE
]


def _launch(*args, cwd=ROOT):
  return subprocess.run(
      [sys.executable, 'launch.py', *args],
      cwd=cwd,
      capture_output=True,
      text=True,
      timeout=600,
  )


@pytest.mark.parametrize(
    'path', SMOKE, ids=[os.path.basename(p) for p in SMOKE]
)
def test_experiment_runs_with_smoke(path, tmp_path):
  config = experiment_file.load_config(path + ':smoke')
  assert config.job in JOBS, f'{path}: job {config.job!r} not in JOBS'
  JOBS[config.job](config, str(tmp_path))
  assert os.listdir(tmp_path), f'{path} wrote nothing to its workdir'
  if config.job == 'train_agent':  # Held-out scenes never reach training.
    with open(os.path.join(tmp_path, 'agent', 'summary.json')) as f:
      summary = json.load(f)
    assert summary['train_scenes'] == ['phantom-s0-24x24x24']
    assert list(summary['scenes']) == ['phantom-s1-24x24x24']


def test_every_experiment_documents_its_command():
  for path in EXPERIMENTS:
    module_doc = open(path).read().split('"""')[1]
    assert 'launch.py --experiment=experiments/' in module_doc, path


def test_launch_runs_inspect_smoke_in_a_temp_workdir(tmp_path):
  proc = _launch(
      '--experiment=experiments/inspect.py:smoke',
      f'--workdir={tmp_path}',
      '--experiment.histogram.bins=16',
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert os.path.getsize(tmp_path / 'inspect.png') > 10_000
  assert os.path.getsize(tmp_path / 'groups.png') > 10_000
  assert '"bins": 16' in (tmp_path / 'volume.json').read_text()
