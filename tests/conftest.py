"""Collection rules and fixtures shared by every test file.

tests/sharded/ needs several JAX devices, which on a CPU exist only when
XLA_FLAGS=--xla_force_host_platform_device_count=N is set before JAX starts;
tests/test_sharding.py runs that folder in such a subprocess. Without the
flag it is not collected (its tests would see one device).

The processes of one run (pytest-xdist's workers and the subprocesses tests
start: launch.py, the multi-process and sharded tests) share XLA's compiled
programs through JAX's persistent compilation cache in a temporary folder,
removed when the run ends.

Property-based tests run under Hypothesis's "ci" profile (derandomize=True,
no example database): each test draws the same examples on every run, so a
rare draw cannot fail one CI run and pass the next (seed 6448 of a renderer
test once did). HYPOTHESIS_PROFILE=default draws fresh examples each run,
for searching beyond the fixed ones.
"""

import os
import shutil
import tempfile

from hypothesis import settings as hypothesis_settings
import jax
import pytest

EXPERIMENTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'experiments'
)

# Tests compile far more XLA than they run (tiny shapes, many programs,
# thousands of them single operations dispatched eagerly, ~35 ms each):
# - XLA's CPU backend at LLVM optimization level 0 compiles about a third
#   faster and runs the same HLO;
# - XLA's older elemental emitter instead of its MLIR fusion emitters
#   (--xla_cpu_use_fusion_emitters=false) compiles about a third faster
#   again (session 20: seven XLA-heavy test files 150 -> 110 s).
# Set before JAX reads its flags (at the first compile), so pytest-xdist's
# workers and the processes tests start inherit them; benchmarks and users'
# runs keep XLA's defaults. A value already given in XLA_FLAGS is kept.
_XLA_TEST_FLAGS = {
    '--xla_backend_optimization_level': '0',
    '--xla_cpu_use_fusion_emitters': 'false',
}
for _flag, _value in _XLA_TEST_FLAGS.items():
  if _flag not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = ' '.join(
        os.environ.get('XLA_FLAGS', '').split() + [f'{_flag}={_value}']
    )

# The renderer's numba kernels compile with their helpers not inlined at
# numba's level (rlhf_tf/render/native_inline.py): about four times faster to
# compile, the same arithmetic, slower to run; tests run tiny shapes and
# compile some forty kernel variants. tests/test_native_inline.py checks the
# default ('always') against it. The kernels' cache stamp tells the two
# apart (render/native_cache.py), but each mode replaces the other's kernels
# in a shared folder; so this run's kernels go to a folder of its own, made
# by the first pytest process (xdist's controller), inherited by the
# workers and the processes tests start, and removed when the run ends
# (pytest_unconfigure); under a NUMBA_CACHE_DIR already given, in a
# subfolder of it. A mode already given is kept as it is. Set before
# rlhf_tf (and so numba) is first imported.
_INLINE = 'RLHF_TF_NUMBA_INLINE'
_NUMBA_CACHE_DIR = 'NUMBA_CACHE_DIR'
_own_numba_cache_dir = None
if _INLINE not in os.environ:
  os.environ[_INLINE] = 'never'
  if os.environ.get(_NUMBA_CACHE_DIR):
    os.environ[_NUMBA_CACHE_DIR] = os.path.join(
        os.environ[_NUMBA_CACHE_DIR], 'rlhf_tf_inline_never'
    )
  else:
    _own_numba_cache_dir = tempfile.mkdtemp(prefix='rlhf_tf_numba_cache_')
    os.environ[_NUMBA_CACHE_DIR] = _own_numba_cache_dir

if '--xla_force_host_platform_device_count' not in os.environ.get(
    'XLA_FLAGS', ''
):
  collect_ignore = ['sharded']

hypothesis_settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

_CACHE_DIR = 'JAX_COMPILATION_CACHE_DIR'
_CACHE_MIN_S = 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'
_OWN_CACHE_DIR = pytest.StashKey[str]()


def pytest_configure(config):
  """Turns on JAX's persistent compilation cache for this run.

  XLA compilation is most of the suite's time, and the same programs are
  compiled again in every process and, after each file's clear_caches()
  below, in every file: the smoke pipeline in a test, in launch.py
  subprocesses and in the other worker; the renderer and the reward model in
  most files. With the cache each program is compiled once per run and read
  back (milliseconds) after that. Keys hash the program, the compile options
  and XLA_FLAGS, so programs for other device counts are compiled apart.

  The folder is made by the first pytest process (xdist's controller) and
  handed to the workers and to subprocesses through the environment; every
  program is stored, not only those that take >= 1 s to compile (JAX's
  default). A folder already named in JAX_COMPILATION_CACHE_DIR is used as
  it is and kept.
  """
  if not os.environ.get(_CACHE_DIR):
    os.environ[_CACHE_DIR] = tempfile.mkdtemp(prefix='rlhf_tf_xla_cache_')
    config.stash[_OWN_CACHE_DIR] = os.environ[_CACHE_DIR]
  os.environ.setdefault(_CACHE_MIN_S, '0')
  jax.config.update('jax_compilation_cache_dir', os.environ[_CACHE_DIR])
  jax.config.update(
      'jax_persistent_cache_min_compile_time_secs',
      float(os.environ[_CACHE_MIN_S]),
  )


def pytest_unconfigure(config):
  """Removes the cache folders this process made (the run's, after its
  workers have ended)."""
  for path in config.stash.get(_OWN_CACHE_DIR, None), _own_numba_cache_dir:
    if path:
      shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
  """Orders the test files for pytest-xdist's queue (``--dist loadfile``
  with ``--no-loadscope-reorder``, pyproject.toml): most tests first, as
  xdist's own reorder does, but the files marked ``subprocesses`` (a few
  tests, minutes of CPU in the processes they start) after the first half
  of the other files.

  Not last: each worker holds its next file queued, so a run that ends on
  them ends on one busy worker (session 17: one worker idle for the last
  150 s of 1212). Not first: their processes would each compile the same
  numba kernels into a still empty cache at once (session 16 put the
  longest files first and the run got slower).
  """
  counts = {}
  for item in items:
    counts[item.path] = counts.get(item.path, 0) + 1
  by_count = sorted(counts, key=lambda path: -counts[path])  # stable
  marked = {
      item.path for item in items if item.get_closest_marker('subprocesses')
  }
  unmarked = [path for path in by_count if path not in marked]
  head = unmarked[: len(unmarked) // 2]
  rest = unmarked[len(head) :]
  rank = {
      path: i
      for i, path in enumerate(
          head + [p for p in by_count if p in marked] + rest
      )
  }
  items.sort(key=lambda item: rank[item.path])  # stable within a file


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

  # Imported here, not at the top: rlhf_tf imports numba, which reads
  # NUMBA_CACHE_DIR when it is first imported (set at the top of this file).
  from rlhf_tf.jobs import experiment_file

  def load(name: str):
    return experiment_file.load_config(
        os.path.join(EXPERIMENTS, f'{name}.py:smoke')
    )

  return load
