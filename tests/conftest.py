"""Collection rules and fixtures shared by every test file.

tests/sharded/ needs several JAX devices, which on a CPU exist only when
XLA_FLAGS=--xla_force_host_platform_device_count=N is set before JAX starts;
tests/test_sharding.py runs that folder in such a subprocess. Without the
flag it is not collected (its tests would see one device).
"""

import os

import jax
import pytest

from rlhf_tf.jobs import experiment_file

EXPERIMENTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'experiments'
)

if '--xla_force_host_platform_device_count' not in os.environ.get(
    'XLA_FLAGS', ''
):
  collect_ignore = ['sharded']


@pytest.fixture(autouse=True, scope='module')
def free_compiled_programs():
  """Drops JAX's compiled programs after each test file.

  Every compiled XLA:CPU program keeps ~3 memory mappings until its cache
  entry goes, and hypothesis tests compile one per drawn shape. One pytest
  process running the whole suite reached Linux's vm.max_map_count (65,530),
  where XLA's LLVM fails with 'Cannot allocate memory' and then segfaults
  inside compilation. Clearing per file bounds the mappings by the largest
  file's programs instead of the whole suite's.
  """
  yield
  jax.clear_caches()


@pytest.fixture
def smoke_config():
  """name -> the ':smoke' config of experiments/<name>.py (every size tiny):
  the tests run the experiments' own small configs."""

  def load(name: str):
    return experiment_file.load_config(
        os.path.join(EXPERIMENTS, f'{name}.py:smoke')
    )

  return load
