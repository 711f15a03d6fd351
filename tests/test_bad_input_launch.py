"""launch.py on a representative subset of the bad-input corpus, as a user
runs it: one line `error: ...` naming the file, key or polygon, exit status
2, and no traceback; and a bug that keeps its traceback.

Each run is mostly start-up (importing JAX and the jobs), so the runs share
one: tests/launch_forked.py imports launch.py's modules once and runs
launch.py as ``__main__`` in a forked child per case, 4 at a time."""

import dataclasses
import json
import os
from pathlib import Path
import subprocess
import sys

from bad_input_corpus import dicom_series, edited, inv3
import numpy as np
import pytest

pytestmark = pytest.mark.subprocesses  # tests/conftest.py queues it mid-run

REPO = Path(__file__).resolve().parents[1]
RENDER = 'experiments/render.py:smoke'


def _inputs(tmp: Path) -> dict:
  """Bad files a user could hand the render job."""
  cut = tmp / 'cut'
  cut.mkdir()
  first = dicom_series(cut)[0]
  first.write_bytes(first.read_bytes()[:600])  # cut inside its header
  mr = tmp / 'mr'
  mr.mkdir()
  edited(mr, 0, lambda ds: setattr(ds, 'Modality', 'MR'))
  (tmp / 'strings.json').write_text('[[["a", 0.1], [0.9, 0.1], [0.5, 0.9]]]')
  inv3(tmp, voxels=np.zeros((12, 1, 1), np.int16), name='thin.inv3')
  (tmp / 'a_file').write_text('')
  return dict(cut=cut / 'series', mr=mr / 'series', first=first)


def _cases(tmp: Path, files: dict) -> list:
  """(name, extra argv, text (or texts) the error line must contain)."""
  vol = '--experiment.volume.'
  return [
      (
          'missing experiment file',
          ['--experiment=experiments/nope.py'],
          'experiments/nope.py',
      ),
      (
          'unknown experiment arg',
          ['--experiment=experiments/render.py:bogus'],
          'bogus',
      ),
      (
          'unknown override key',
          [
              '--experiment=experiments/inspect.py:smoke',
              '--experiment.histogram.binz=16',
          ],
          ("unknown config key 'histogram.binz'", 'bins, grad_percentile'),
      ),
      (
          'unknown job',
          [f'--experiment={RENDER}', '--experiment.job=fly'],
          ("unknown job 'fly'", 'inspect', 'train_reward'),
      ),
      (
          'override of the wrong type',
          [f'--experiment={RENDER}', '--experiment.render.image_size=big'],
          'render.image_size',
      ),
      (
          'render.step_mm=-1',
          [f'--experiment={RENDER}', '--experiment.render.step_mm=-1'],
          'render.step_mm',
      ),
      (
          'turntable=-3',
          [f'--experiment={RENDER}', '--experiment.turntable=-3'],
          'turntable must be',
      ),
      (
          'polygons=abc',
          [f'--experiment={RENDER}', '--experiment.polygons=abc'],
          'config.polygons[0]',
      ),
      (
          'actions file with text vertices',
          [
              f'--experiment={RENDER}',
              f'--experiment.actions_file={tmp / "strings.json"}',
          ],
          'strings.json: polygon 0',
      ),
      (
          '12x1x1 .inv3',
          [
              f'--experiment={RENDER}',
              f'{vol}source=inv3',
              f'{vol}path={tmp / "thin.inv3"}',
          ],
          'thin.inv3',
      ),
      (
          'DICOM slice cut in its header',
          [
              f'--experiment={RENDER}',
              f'{vol}source=dicom',
              f'{vol}path={files["cut"]}',
          ],
          files['first'].name,
      ),
      (
          'MR series',
          [
              f'--experiment={RENDER}',
              f'{vol}source=dicom',
              f'{vol}path={files["mr"]}',
          ],
          'Modality MR',
      ),
      ('workdir inside a file', [f'--experiment={RENDER}'], 'a_file'),
      (
          'ui.azimuths=0',
          [
              '--experiment=experiments/collect.py:smoke',
              '--experiment.ui.azimuths=0',
          ],
          'ui.azimuths must be in [1, 360]',
      ),
  ]


@dataclasses.dataclass
class Run:
  returncode: int
  stdout: str
  stderr: str


def _launch_all(runs: list, tmp: Path) -> list:
  """[Run] of ``python launch.py ARGV --workdir=W`` for each (argv, W)."""
  cases = [
      dict(
          argv=[*argv, f'--workdir={workdir}'],
          out=str(tmp / f'run{i}.out'),
          err=str(tmp / f'run{i}.err'),
      )
      for i, (argv, workdir) in enumerate(runs)
  ]
  (tmp / 'cases.json').write_text(json.dumps(cases))
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu')
  subprocess.run(
      [
          sys.executable,
          str(REPO / 'tests' / 'launch_forked.py'),
          str(tmp / 'cases.json'),
      ],
      cwd=REPO,
      env=env,
      check=True,
      timeout=600,
  )
  return [
      Run(
          int(Path(c['out'] + '.status').read_text()),
          Path(c['out']).read_text(),
          Path(c['err']).read_text(),
      )
      for c in cases
  ]


def _bug(tmp: Path) -> Path:
  """An experiment file whose config makes the render job fail on a bug
  (volume=1: not a ConfigDict), not on the user's input."""
  bug = tmp / 'bug.py'
  bug.write_text(
      'import ml_collections\n'
      'def get_config(arg=None):\n'
      '  return ml_collections.ConfigDict(dict(job="render", '
      'volume=1))\n'
  )
  return bug


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """(cases, their runs, the bug's run), all launched together."""
  tmp = tmp_path_factory.mktemp('launches')
  cases = _cases(tmp, _inputs(tmp))
  workdirs = [
      tmp / ('a_file/w' if name == 'workdir inside a file' else f'work{i}')
      for i, (name, _, _) in enumerate(cases)
  ]
  argvs = [argv for _, argv, _ in cases] + [[f'--experiment={_bug(tmp)}']]
  *done, bug = _launch_all(list(zip(argvs, workdirs + [tmp / 'w'])), tmp)
  return cases, done, bug


def test_launch_prints_one_error_line_and_no_traceback(runs):
  cases, done, _ = runs
  problems = []
  for (name, _, needle), run in zip(cases, done):
    out = run.stdout + run.stderr
    errors = [line for line in out.splitlines() if line.startswith('error:')]
    needles = (needle,) if isinstance(needle, str) else needle
    if (
        run.returncode != 2
        or 'Traceback' in out
        or len(errors) != 1
        or not all(n in errors[0] for n in needles)
    ):
      problems.append(f'{name}: rc={run.returncode}\n{out[-1500:]}')
  assert not problems, '\n\n'.join(problems)


def test_a_bug_keeps_its_traceback(runs):
  """Not every error is the user's: launch.py does not swallow the rest."""
  *_, bug = runs
  assert bug.returncode not in (0, 2)
  assert 'Traceback' in bug.stderr
