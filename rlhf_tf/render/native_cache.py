"""numba's on-disk cache of the renderer's kernels, stamped with the source
of every module they can inline: ``@kernel(...)`` instead of
``@numba.njit(..., cache=True)``.

numba's cache stamps a kernel's compiled code with a hash of the kernel's
own source file only (and keys it by its signature and its own bytecode).
The renderer's kernels inline helpers from ~30 other modules of this
package and freeze their module-level constants (``preintegration.EDGE_X``,
``native_block_boxes.BLOCK``) at compile time. So after an edit, a
``git pull`` or a new release that changes only a helper's module, numba
would load the kernel compiled from the old helper: an image from code
that is no longer there, and no error.

Here a kernel's stamp is numba's own (its file's hash) together with a
hash of every ``*.py`` file in the kernel's directory (the render
package: the kernels import nothing outside it) and of the helpers'
compile mode (``native_inline.INLINE``). Any change there makes numba
find a stale index and compile the kernel again, once, for the next runs
to load. Same place on disk as numba's cache (``__pycache__`` next to the
module, or ``NUMBA_CACHE_DIR``); a kernel's index is replaced, not added
to, so old versions do not pile up. Tested in tests/test_native_cache.py
(with a kernel whose helper's constant changes between two processes).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numba
from numba.core import caching

from rlhf_tf.render import native_inline


@functools.lru_cache(maxsize=None)
def package_stamp(directory: str) -> str:
  """sha256 of the names and contents of the ``*.py`` files in directory
  (sorted by name), and of the helpers' compile mode."""
  digest = hashlib.sha256(native_inline.INLINE.encode())
  for path in sorted(Path(directory).glob('*.py')):
    digest.update(path.name.encode() + b'\0')
    digest.update(path.read_bytes())
    digest.update(b'\0')
  return digest.hexdigest()


class _PackageImpl(caching.CompileResultCacheImpl):
  """numba's cache implementation, its locator's stamp widened to the
  kernel's package (``package_stamp``)."""

  def __init__(self, py_func):
    super().__init__(py_func)
    locator = self._locator
    own_stamp = locator.get_source_stamp
    directory = str(Path(py_func.__code__.co_filename).resolve().parent)
    # Bound on the instance: the locator's class stays numba's.
    locator.get_source_stamp = lambda: (own_stamp(), package_stamp(directory))


class _PackageCache(caching.FunctionCache):
  _impl_class = _PackageImpl


def kernel(**options):
  """``numba.njit(**options)`` with the on-disk cache of this module
  (what ``cache=True`` would do, with the package's stamp)."""
  if 'cache' in options:
    raise ValueError('kernel() always caches; drop cache=')

  def wrap(fn):
    dispatcher = numba.njit(**options)(fn)
    # What Dispatcher.enable_caching does, with this module's cache class.
    dispatcher._cache = _PackageCache(dispatcher.py_func)  # pylint: disable=protected-access
    return dispatcher

  return wrap
