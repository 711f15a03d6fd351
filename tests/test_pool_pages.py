"""Pool buffers reused once no array uses them (rlhf_tf.render.pool_pages):
never while an array, a view of one or a JAX array wrapping one is alive;
zeroed when reused; idle ones released beyond trim's bytes; a native cache
build in a dropped cache's pages gives the same cache."""

import gc

import jax
import numpy as np
from render_testing import small_cache

from rlhf_tf.render import pool_pages, raymarch


def test_a_buffer_is_reused_only_once_nothing_uses_it():
  shape = (1000, 16)
  a = pool_pages.zeros(shape, np.float32)
  assert a.shape == shape and a.ctypes.data % 4096 == 0 and not a.any()
  a[1] = 5.0
  ptr = a.ctypes.data
  view = a[2:]
  del a
  busy = pool_pages.zeros(shape, np.float32)  # The view keeps it in use.
  assert busy.ctypes.data != ptr
  del view
  gc.collect()
  again = pool_pages.zeros(shape, np.float32)
  assert again.ctypes.data == ptr and not again.any()  # Reused, zeroed.
  again[3] = 1.0
  wrapped = jax.device_put(again)  # Wrapped in place, not copied.
  assert wrapped.unsafe_buffer_pointer() == ptr
  del again
  other = pool_pages.zeros(shape, np.float32)  # JAX still holds it.
  assert other.ctypes.data != ptr
  assert float(wrapped[3, 0]) == 1.0
  del wrapped
  gc.collect()
  last = pool_pages.zeros(shape, np.float32)
  assert last.ctypes.data == ptr and not last.any()
  # Another size or dtype width never takes it.
  del last
  gc.collect()
  assert pool_pages.zeros((1000, 8), np.float32).ctypes.data != ptr
  del busy, other


def test_trim_releases_idle_buffers_beyond_its_bytes():
  pool_pages.trim(0)
  held = pool_pages.held_bytes()
  kept = pool_pages.zeros((4096,), np.uint16)
  spare = [pool_pages.zeros((4096,), np.uint16) for _ in range(3)]
  assert pool_pages.held_bytes() == held + 4 * 8192
  del spare
  gc.collect()
  pool_pages.trim(8192)  # One idle buffer kept, the one in use stays.
  assert pool_pages.held_bytes() == held + 2 * 8192
  pool_pages.trim(0)
  assert pool_pages.held_bytes() == held + 8192
  assert not kept.any()


def test_a_native_build_in_a_dropped_caches_pages_is_the_same_cache():
  s = raymarch.RenderSettings(
      step_mm=1.1, cache_tile_rays=24, preintegrate=True, shading=True
  )
  first = small_cache(s, seed=1, azimuth=30.0)
  want = {
      k: np.array(v)
      for k, v in vars(first.tiles).items()
      if isinstance(v, jax.Array)
  }
  arrays = [v for v in vars(first.tiles).values() if isinstance(v, jax.Array)]
  used = {v.unsafe_buffer_pointer() for v in arrays}
  del arrays
  del first
  gc.collect()
  again = small_cache(s, seed=1, azimuth=30.0)
  assert again.tiles.u.unsafe_buffer_pointer() in used
  assert again.tiles.seg_box.unsafe_buffer_pointer() in used
  for k, w in want.items():
    assert np.array_equal(np.asarray(getattr(again.tiles, k)), w), k
