"""Tiles handed out to a native kernel's threads as they ask: no idle core
while the other marches the last of its share.

numba's ``prange`` (OpenMP threading layer) splits its range among the
threads up front, so a kernel whose lanes each march a fixed spread set of
tiles (``direct_kernels.tiles``) finishes when the slowest thread does:
when another process takes a core for a while (this project's CPU
benchmarks share 2 cores with other jobs), its thread's tiles wait while
the other thread idles. ``next_job`` is a shared counter each lane
increments atomically to claim the next tile: every tile is claimed once,
by whichever thread is running, so the threads finish within one tile of
each other. Which lane marches a tile does not change its pixels (a lane's
scratch is only its own frame row).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def next_job(typingctx, counter):
  """counter[0] += 1 atomically (int64 [1] array shared by the threads);
  returns its value before the increment (the job claimed)."""
  del typingctx
  if not (
      isinstance(counter, types.Array)
      and counter.dtype == types.int64
      and counter.ndim == 1
  ):
    return None
  sig = types.int64(counter)

  def codegen(context, builder, signature, args):
    ary = context.make_array(signature.args[0])(context, builder, args[0])
    one = ir.Constant(ir.IntType(64), 1)
    return builder.atomic_rmw('add', ary.data, one, 'monotonic')

  return sig, codegen
