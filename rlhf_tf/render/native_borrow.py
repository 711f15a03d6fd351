"""Arrays without a reference count, for the hot loops of numba kernels.

numba counts references to every array it hands to a function, and a
helper inlined at numba's level (``inline='always'``) gets its array
arguments as new variables: an atomic increment and a (not inlined)
decrement per array per call, which its reference-count pruning misses
inside branchy loops. In the native pre-integrated march
(``native_segment_forward``, ``native_segment_adjoint``) that was tens of
atomics per segment, most of a transparent segment's cost, and on arrays
that every thread shares (the table, the cotangent's blocks) the same
cache line bounced between cores.

``borrowed(a)`` is a view of a's memory whose meminfo is null: numba's
increments and decrements of it do nothing (NRT_incref / NRT_decref return
at a null pointer). It owns nothing, so it must not outlive the array it
was taken from: take it of a function's arguments (the caller holds them
for the call), never of an array made in the same function.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def borrowed(typingctx, ary):
  """ary (a numba array) with a null meminfo and parent: same data, shape,
  strides and type."""
  del typingctx
  if not isinstance(ary, types.Array):
    return None
  sig = ary(ary)

  def codegen(context, builder, signature, args):
    aryty = signature.args[0]
    src = context.make_array(aryty)(context, builder, args[0])
    out = context.make_array(aryty)(context, builder)
    out.meminfo = cgutils.get_null_value(out.meminfo.type)
    out.parent = cgutils.get_null_value(out.parent.type)
    out.nitems = src.nitems
    out.itemsize = src.itemsize
    out.data = src.data
    out.shape = src.shape
    out.strides = src.strides
    return out._getvalue()

  return sig, codegen
