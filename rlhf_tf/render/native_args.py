"""Arrays a numba kernel only reads, handed to it as read-only views.

numba compiles one variant of a kernel per argument types, and an array's
type says whether it is writable: a numpy view of a jax array is
read-only, a numpy array is not. A pre-integrated pool's fields reach the
skip-field kernels both ways (the native build's numpy pool; an XLA-built
or sharded pool, or a cache whose fields were changed, through jax), so
each kernel was compiled twice or three times (the clear-block weights:
~20 s of CPU each, in every fresh process without numba's cache). Handed
as read-only views (no copy), every caller gets the same variant.
"""

from __future__ import annotations

import numpy as np


def read_only(x, dtype=None) -> np.ndarray:
  """A read-only view of np.asarray(x, dtype) (a copy only where dtype
  converts)."""
  view = np.asarray(x, dtype).view()
  view.flags.writeable = False
  return view
