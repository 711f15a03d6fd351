"""The sharded-path tests (tests/sharded/) on 8 simulated CPU devices.

The device count of the CPU backend is fixed when JAX starts, so these run
in a fresh pytest process with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (each test there compares
a sharded path on 2 and 8 devices with its 1-device result).
"""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.subprocesses  # tests/conftest.py queues it mid-run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = 8


def sharded_env(num_devices: int = DEVICES) -> dict:
  env = dict(os.environ)
  flags = [
      f
      for f in env.get('XLA_FLAGS', '').split()
      if not f.startswith('--xla_force_host_platform_device_count')
  ]
  env['XLA_FLAGS'] = ' '.join(
      flags + [f'--xla_force_host_platform_device_count={num_devices}']
  )
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def test_sharded_paths_on_8_host_devices():
  proc = subprocess.run(
      [
          sys.executable,
          '-m',
          'pytest',
          '-q',
          '-x',
          '-p',
          'no:cacheprovider',
          os.path.join('tests', 'sharded'),
      ],
      cwd=ROOT,
      env=sharded_env(),
      capture_output=True,
      text=True,
      timeout=1200,
  )
  assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
  assert ' passed' in proc.stdout and ' failed' not in proc.stdout
