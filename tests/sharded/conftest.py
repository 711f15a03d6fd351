"""Fixtures of the sharded tests (run by tests/test_sharding.py)."""

import jax
import pytest

from rlhf_tf.devices import mesh as mesh_lib


@pytest.fixture(scope='session', autouse=True)
def _eight_devices():
  assert jax.device_count() >= 8, (
      'tests/sharded needs XLA_FLAGS=--xla_force_host_platform_device_count=8'
      f' (see tests/test_sharding.py); got {jax.devices()}'
  )


@pytest.fixture(params=[2, 8], ids=lambda n: f'{n}dev')
def mesh(request):
  """A 'data' mesh over the first 2 or 8 devices."""
  return mesh_lib.local_mesh(request.param)


@pytest.fixture(scope='session')
def mesh8():
  """A 'data' mesh over 8 devices (for the slower tests)."""
  return mesh_lib.local_mesh(8)
