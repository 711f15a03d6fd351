"""Zeroed, page-aligned host buffers for a ray cache's pool, reusing those of
caches dropped since.

The native cache build (``native_cache_build``) samples a view's pool
(~310 MB on Cranium 256^2 shaded, 10 fields) into anonymous pages (mmap):
page-aligned, so jax.device_put wraps them without a copy, and 4 KiB pages
(``native_cache_build._aligned_zeros``'s docstring: huge pages compacted
memory). Fresh pages are faulted in, one by one, as the build first writes
them: ~0.2 s of CPU per pool (~11 % of a one-thread build; the kernel's
page-fault path and zeroing), where writing zeros over pages already
mapped takes ~0.01 s.

So every buffer ``zeros`` hands out stays registered here, and once no
array uses it any more (the cache holding it was dropped: only this
registry refers to the mmap; every numpy array or exported buffer over it
holds a reference to it, directly or through its base) it is zeroed and
handed out again for a request of the same size. A build replacing the
cache of the view before takes the buffers of the one before that (pool
shapes repeat across views: ``cache_tiling.pool_chunks``).

The native build's skip fields (``native_skip_fields``: block and segment
boxes, clear-block weights, ~100 MB) take their arrays here too: the
whole build_ray_cache x 0.98 / 0.96 CPU shaded / unshaded on Cranium
256^2 (one thread, paired, 9 reps), after x 0.89 / 0.86 for the pool.

Memory: idle buffers are kept up to the size of the latest request set
(``trim``: one spare cache's pool and skip fields, ~410 MB on Cranium
256^2 shaded), and released beyond it.
"""

from __future__ import annotations

import mmap
import sys
import threading

import numpy as np

# The registry's own lock, never held around a numba call (native_lock.LOCK
# is): zeros runs both under native_lock.LOCK (the pool) and outside it
# (ray_cache's skip fields), and two builds may pick the same idle buffer.
_LOCK = threading.Lock()
_BUFFERS: list = []  # Every mmap handed out and not released.


def _idle(i: int) -> bool:
  """Whether nothing but the registry refers to its buffer i."""
  # The registry's list entry and getrefcount's own argument.
  return sys.getrefcount(_BUFFERS[i]) <= 2


def zeros(shape, dtype) -> np.ndarray:
  """Zeros [shape] of dtype in page-aligned anonymous memory: an idle
  registered buffer of the same byte size, zeroed, or fresh pages."""
  count = int(np.prod(shape))
  size = max(count * np.dtype(dtype).itemsize, 1)
  with _LOCK:
    reuse = [
        i for i in range(len(_BUFFERS)) if len(_BUFFERS[i]) == size and _idle(i)
    ]
    if reuse:
      out = np.frombuffer(_BUFFERS[reuse[0]], dtype, count=count)
      out[...] = 0
    else:
      _BUFFERS.append(mmap.mmap(-1, size))
      out = np.frombuffer(_BUFFERS[-1], dtype, count=count)
  return out.reshape(shape)


def trim(keep_bytes: int) -> None:
  """Releases idle buffers beyond keep_bytes of them (the newest kept)."""
  with _LOCK:
    drop, idle_bytes = [], 0
    for i in reversed(range(len(_BUFFERS))):
      if _idle(i):
        idle_bytes += len(_BUFFERS[i])
        if idle_bytes > keep_bytes:
          drop.append(i)
    for i in drop:  # Descending: the indices left stay valid.
      del _BUFFERS[i]


def held_bytes() -> int:
  """Bytes of the registered buffers, in use or idle."""
  with _LOCK:
    return sum(len(b) for b in _BUFFERS)
