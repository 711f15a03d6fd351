"""All native (numba) kernels of the renderer share one lock."""

import pathlib

from rlhf_tf.render import cached_native, direct_native, native_lock

RENDER = pathlib.Path(native_lock.__file__).parent


def test_direct_and_cached_marches_take_the_same_lock():
  # Two locks would let a direct and a cached march (the UI renders both in
  # background threads) enter numba's threading layer at once, which the
  # 'workqueue' layer answers by aborting the process.
  assert direct_native.LOCK is native_lock.LOCK
  assert cached_native.LOCK is native_lock.LOCK


def test_no_other_render_module_makes_a_lock_of_its_own():
  own = [
      p.name
      for p in sorted(RENDER.glob('*.py'))
      if p.name != 'native_lock.py'
      and ('threading.Lock(' in p.read_text() or 'RLock(' in p.read_text())
  ]
  assert not own, f'render modules with their own lock: {own}'
