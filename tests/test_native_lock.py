"""All native (numba) kernels of the renderer share one lock."""

import importlib
import pathlib
import threading
import types

from rlhf_tf.render import cached_native, direct_native, native_lock, pool_pages

RENDER = pathlib.Path(native_lock.__file__).parent


def test_direct_and_cached_marches_take_the_same_lock():
  # Two locks would let a direct and a cached march (the UI renders both in
  # background threads) enter numba's threading layer at once, which the
  # 'workqueue' layer answers by aborting the process.
  assert direct_native.LOCK is native_lock.LOCK
  assert cached_native.LOCK is native_lock.LOCK


def _module(path):
  return importlib.import_module(f'rlhf_tf.render.{path.stem}')


def _native(module):
  """Whether it compiles numba kernels or calls them under native_lock.LOCK."""

  def numba_made(v):  # numba itself, a part of it, or a compiled kernel.
    name = v.__name__ if isinstance(v, types.ModuleType) else type(v).__module__
    return name.split('.')[0] == 'numba'

  return any(v is native_lock or numba_made(v) for v in vars(module).values())


def _locks(module):
  lock_types = type(threading.Lock()), type(threading.RLock())
  return [
      k
      for k, v in vars(module).items()
      if isinstance(v, lock_types) and v is not native_lock.LOCK
  ]


def test_no_other_numba_module_makes_a_lock_of_its_own():
  # A lock of its own around a numba call would let it enter the threading
  # layer beside another module's kernel. Modules without numba may keep a
  # lock for their own Python state (pool_pages: its buffer registry, taken
  # both inside and outside native_lock.LOCK, so it cannot reuse it).
  modules = [_module(p) for p in sorted(RENDER.glob('*.py'))]
  own = {m.__name__: _locks(m) for m in modules if _native(m) and _locks(m)}
  assert not own, f'numba render modules with their own lock: {own}'
  # The check sees the native modules and their locks at all.
  for name in 'direct_native', 'direct_kernels', 'native_cache_build':
    assert _native(_module(RENDER / name)), name
  assert not _native(pool_pages) and _locks(pool_pages) == ['_LOCK']
