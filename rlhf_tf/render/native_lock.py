"""The one lock around every parallel numba call of the renderer.

numba's threading layers are not all safe to enter from two Python threads
at once: 'workqueue' (the fallback where neither OpenMP nor TBB is
installed, e.g. many macOS setups) aborts the process on concurrent access.
The browser UI renders in background threads, direct marches and cached
marches alike, so all native kernels (direct_native, cached_native, the
native cache build) take this single lock; one lock per module would still
let a direct and a cached march enter the layer together.
"""

import threading

LOCK = threading.Lock()
