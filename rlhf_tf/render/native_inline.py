"""How the renderer's small numba helpers compile: ``@numba.njit(**HELPER)``.

'always' (the default): every helper of the native marches (trilinear
lookups, table reads, a segment's optics) is inlined at numba's level into
the kernel that calls it, before type inference, and compiles with that
kernel's options (fast-math contraction, numpy's error model). numba then
sees one function and prunes reference counts and loads across the helpers'
boundaries; session 17 measured the cached re-render about twice as slow
without it. The price is compile time: numba types every inlined body again
at every call site, ~40 kernel variants, minutes of CPU on a fresh install.

'never' (``RLHF_TF_NUMBA_INLINE=never``): the helpers stay numba functions
that the kernels call (LLVM still inlines what it likes); they compile about
four times faster and run slower. The test suite uses it
(tests/conftest.py). A helper compiled once is shared by every kernel that
calls it, and numba would give it the fast-math flags and error model of
whichever kernel compiled it first (numba's flag inheritance), so which
kernel ran first would decide whether its multiply-adds are fused. Here the
helpers fix their own: no fast-math, numpy's error model (a zero divisor
gives inf / nan, as in the kernels). So the results do not depend on
compile order; they differ from 'always' only where a kernel with
fast-math contraction would have fused a helper's multiply-adds (~1 ulp):
tests/test_native_inline.py compares the two modes.

The kernels' on-disk cache is stamped with the mode
(``native_cache.package_stamp``): a 'never' process does not load 'always'
kernels or the reverse; it compiles its own and replaces the other's in
that folder, so runs that alternate modes keep them apart with a
``NUMBA_CACHE_DIR`` of their own (the tests make one per run).
"""

import os

_VARIABLE = 'RLHF_TF_NUMBA_INLINE'

INLINE = os.environ.get(_VARIABLE, 'always')
if INLINE == 'always':
  HELPER = dict(inline='always')
elif INLINE == 'never':
  HELPER = dict(inline='never', fastmath=False, error_model='numpy')
else:
  raise ValueError(f"{_VARIABLE}={INLINE!r}: expected 'always' or 'never'")
