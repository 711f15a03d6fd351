"""rlhf_tf.render.native_cache: a cached kernel is compiled again when a
module it inlines changes, not only its own file (numba's cache=True,
shown here too, loads the stale kernel)."""

import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap

ROOT = Path(__file__).resolve().parents[1]

_HELPER = """
import numba
VALUE = {value}

@numba.njit(inline='always')
def value():
  return VALUE
"""

_KERNELS = """
import numba
import helper
from rlhf_tf.render.native_cache import kernel

@kernel(nogil=True)
def stamped():
  return helper.value()

@numba.njit(cache=True)
def plain():
  return helper.value()
"""

_RUN = """
import json
import kernels
print(json.dumps({
    'stamped': kernels.stamped(), 'plain': kernels.plain(),
    'stamped_hits': sum(kernels.stamped.stats.cache_hits.values()),
    'plain_hits': sum(kernels.plain.stats.cache_hits.values()),
}))
"""


def _run(package, cache_dir):
  env = dict(os.environ)
  env['NUMBA_CACHE_DIR'] = str(cache_dir)
  env['PYTHONPATH'] = os.pathsep.join([str(package), str(ROOT)])
  out = subprocess.run(
      [sys.executable, '-c', _RUN],
      env=env,
      cwd=package,
      capture_output=True,
      text=True,
      check=True,
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_kernel_recompiles_when_a_helper_module_changes(tmp_path):
  package = tmp_path / 'package'
  package.mkdir()
  (package / 'helper.py').write_text(_HELPER.format(value=1))
  (package / 'kernels.py').write_text(textwrap.dedent(_KERNELS))
  cache_dir = tmp_path / 'numba_cache'

  first = _run(package, cache_dir)
  assert first == dict(stamped=1, plain=1, stamped_hits=0, plain_hits=0)
  # Nothing changed: both load what the first run stored.
  again = _run(package, cache_dir)
  assert again == dict(stamped=1, plain=1, stamped_hits=1, plain_hits=1)

  # Only the helper's module changes (the kernels' file is untouched).
  (package / 'helper.py').write_text(_HELPER.format(value=2))
  edited = _run(package, cache_dir)
  assert edited['stamped'] == 2
  assert edited['stamped_hits'] == 0
  # numba's own cache loads the kernel compiled from the old helper.
  assert edited['plain'] == 1
  assert edited['plain_hits'] == 1
  # The new stamp is stored: the next run loads the new kernel.
  assert _run(package, cache_dir) == dict(
      stamped=2, plain=1, stamped_hits=1, plain_hits=1
  )


def test_every_cached_kernel_of_the_package_is_stamped():
  """A kernel cached with numba's own cache=True would be loaded stale
  after a helper's module changes: every cached kernel uses
  native_cache.kernel."""
  package = ROOT / 'rlhf_tf'
  offenders = [
      f'{path.relative_to(ROOT)}:{n}'
      for path in sorted(package.rglob('*.py'))
      for n, line in enumerate(path.read_text().splitlines(), 1)
      if 'cache=True' in line.replace(' ', '')
      and path.name != 'native_cache.py'
  ]
  assert (
      not offenders
  ), f'numba cache=True instead of native_cache.kernel: {offenders}'
