"""A two-process job through launch.py agrees with one process.

Two CPU processes on 127.0.0.1 (jax.distributed, gloo collectives, 2
simulated devices each: a 4-device mesh) run an experiment's ':smoke' job
through launch.py into one workdir; one process with one device runs it into
another (the quickstart's smoke run of the suite). Checked:

- both processes finish (exit status 0);
- process 1 writes nothing under the workdir but its share of the orbax
  checkpoints (a Python audit hook, tests/launch_audited.py, records its file
  writes; it never opens the SQLite store -- dataset.StoreOfProcess0 -- so
  any store access there would fail the run); process 0 wrote the outputs;
- both workdirs hold every figure and number of the evaluation
  (tests/test_quickstart_outputs.py's check_quickstart_outputs);
- the outputs are those of one process: the same files, the same simulated
  votes in the store (pair by pair), the inspector's criteria of every
  rendering within 1e-5 (float32 rounding of renderings split over 4
  devices; |diff| 1e-6 measured), the reward metrics within 2e-3 (float32
  sums of the gradient in another order over 2 epochs) and the evaluation's
  held-out accuracy within 0.05 (one pair of the 6 held out may flip).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from test_quickstart_outputs import check_quickstart_outputs
from test_sharding import sharded_env

from rlhf_tf.preferences import store as store_lib

pytestmark = pytest.mark.subprocesses  # tests/conftest.py queues it mid-run

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXPERIMENT = 'experiments/quickstart.py:smoke'
TIMEOUT_S = 900


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch_args(workdir) -> list:
  return [f'--experiment={EXPERIMENT}', f'--workdir={workdir}']


def _files(workdir) -> set:
  """Relative paths of the files of a workdir; left out: checkpoint
  internals (they depend on the process count: ocdbt.process_<i>), PNG
  names (content hashes of renderings) and the time in TensorBoard's."""
  out = set()
  for folder, _, names in os.walk(workdir):
    rel = os.path.relpath(folder, workdir)
    if 'checkpoints' in rel.split(os.sep) or rel.startswith('images'):
      continue
    for n in names:
      if n.startswith('preferences.sqlite-'):  # WAL files, while open
        continue
      if n.startswith('events.out.tfevents.'):  # .<time>.<host>
        n = 'events.out.tfevents'
      out.add(os.path.normpath(os.path.join(rel, n)))
  return out


def _votes(workdir) -> list:
  with store_lib.PreferenceStore(
      os.path.join(workdir, 'preferences.sqlite')
  ) as s:
    return sorted(
        (v.scene_id, v.pair_id, v.left_action, v.right_action, v.choice)
        for v in s.effective_votes()
    )


def _checkpoint_write(path: str) -> bool:
  return 'checkpoints' in path.split(os.sep)


def test_launch_two_processes_agree_with_one(tmp_path):
  two, one = tmp_path / 'two', tmp_path / 'one'
  port = _free_port()
  procs = []
  for i in range(2):
    env = dict(
        sharded_env(2),
        JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
        JAX_NUM_PROCESSES='2',
        JAX_PROCESS_ID=str(i),
    )
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, 'launch_audited.py'),
                str(tmp_path / f'audit{i}.json'),
                str(two),
            ]
            + _launch_args(two),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
  reference = subprocess.run(
      [sys.executable, 'launch.py'] + _launch_args(one),
      cwd=ROOT,
      env=sharded_env(1),
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
  )
  logs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
  for i, p in enumerate(procs):
    assert p.returncode == 0, f'process {i}:\n{logs[i][-4000:]}'
  assert reference.returncode == 0, reference.stderr[-4000:]
  assert 'process 1 of 2, 2 local / 4 global devices' in logs[1]

  audits = [
      json.loads((tmp_path / f'audit{i}.json').read_text()) for i in range(2)
  ]
  stray = [e for e in audits[1] if not _checkpoint_write(e[1])]
  assert not stray, f'process 1 wrote {stray[:10]}'
  written = {os.path.relpath(p, two) for _, p in audits[0]}
  for name in (
      'reward/summary.json',
      'evaluation/summary.json',
      'simulate_summary.json',
      'quickstart_timings.json',
  ):
    assert name in written, (name, sorted(written)[:20])

  check_quickstart_outputs(one)
  check_quickstart_outputs(two)
  assert _files(two) == _files(one)
  assert len(os.listdir(two / 'images')) == len(os.listdir(one / 'images'))
  assert _votes(two) == _votes(one)
  (crit,) = [n for n in os.listdir(one) if n.startswith('criteria_')]
  np.testing.assert_allclose(
      np.load(two / crit), np.load(one / crit), rtol=0, atol=1e-5
  )
  got, want = (
      json.loads((w / 'reward' / 'summary.json').read_text())
      for w in (two, one)
  )
  assert got['runs'].keys() == want['runs'].keys()
  for loss, seeds in want['runs'].items():
    for seed, row in seeds.items():
      for key in ('train_loss', 'train_ce', 'heldout_ce', 'heldout_nll'):
        assert abs(got['runs'][loss][seed][key] - row[key]) < 2e-3, (
            loss,
            seed,
            key,
        )
  got, want = (
      json.loads((w / 'evaluation' / 'summary.json').read_text())
      for w in (two, one)
  )
  for loss in ('ce', 'nll', 'davidson'):
    assert (
        abs(
            got[loss]['heldout']['accuracy'] - want[loss]['heldout']['accuracy']
        )
        <= 0.05
    ), loss


def test_launch_refuses_a_one_process_job_in_two_processes(tmp_path):
  """A job not written for several processes (jobs.MULTI_PROCESS_JOBS)
  stops in every process with one error line, before it writes."""
  port = _free_port()
  procs = [
      subprocess.Popen(
          [
              sys.executable,
              'launch.py',
              '--experiment=experiments/inspect.py:smoke',
              f'--workdir={tmp_path / "w"}',
          ],
          cwd=ROOT,
          env=dict(
              sharded_env(1),
              JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
              JAX_NUM_PROCESSES='2',
              JAX_PROCESS_ID=str(i),
          ),
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
      )
      for i in range(2)
  ]
  for p in procs:
    _, err = p.communicate(timeout=TIMEOUT_S)
    assert p.returncode == 2, err[-3000:]
    assert "error: job 'inspect' runs in one process" in err
  assert not (tmp_path / 'w').exists()
