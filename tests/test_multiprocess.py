"""Two CPU processes on 127.0.0.1 (jax.distributed, gloo) agree with one.

Each process has 2 simulated CPU devices; the default mesh spans all 4. The
20,000-action rewards and the corner maps must equal the 1-process result
(float32 rounding of batched matmuls), and a 2-epoch reward training with
its checkpoints written by both processes must reach the same metrics.
"""

import json
import os
import socket
import subprocess
import sys

import multiprocess_reference as ref
import numpy as np
import pytest
from test_sharding import sharded_env

pytestmark = pytest.mark.subprocesses  # tests/conftest.py queues it mid-run

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_agree_with_one(tmp_path):
  port = _free_port()
  env = sharded_env(2)
  procs = [
      subprocess.Popen(
          [
              sys.executable,
              os.path.join(HERE, 'multiprocess_worker.py'),
              str(i),
              str(port),
              str(tmp_path),
          ],
          env=env,
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
      )
      for i in range(2)
  ]
  logs = [p.communicate(timeout=900)[0] for p in procs]
  for i, p in enumerate(procs):
    assert p.returncode == 0, f'process {i}:\n{logs[i][-4000:]}'
  got = np.load(tmp_path / 'results.npz')
  runs = json.loads((tmp_path / 'summary.json').read_text())
  # Process 0 alone wrote the training outputs.
  assert (tmp_path / 'train' / 'summary.json').exists()

  want = ref.sharded_paths(None, str(tmp_path / 'one'))
  np.testing.assert_allclose(
      got['rewards'], want['rewards'], rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(got['maps'], want['maps'], rtol=1e-5, atol=1e-6)
  for k in range(2):
    a, b = runs['ce'][f'seed_{k}'], want['summary']['ce'][f'seed_{k}']
    for key in ('train_loss', 'heldout_ce', 'heldout_accuracy'):
      assert abs(a[key] - b[key]) < 2e-3, (k, key, a[key], b[key])
