"""4-wide loads and scatter-adds of an RGBA TF table in numba kernels.

A bilinear TF lookup reads the 4 channels of 4 bins, and the table's
cotangent adds into the same 16 values: as scalars that is 16 loads and
36 arithmetic instructions per lookup, and 16 read-modify-writes per
scatter, most of a sample's instructions in the cached march's adjoint
(``cached_native_kernels``). A bin's 4 channels are adjacent in a flat
[bins * 4] table, so each bin is one 4-lane vector: these intrinsics emit
LLVM vector loads, arithmetic and stores for them (numba leaves LLVM's
superword vectorizer off: numba#8705), lane by lane the same operations
in the same order as the scalar code, so results are bit for bit the
scalar ones (tests/test_native_rgba.py). Offsets are flat element indices
of channel 0 of a bin (4 * bin), unsigned.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_I32 = ir.IntType(32)


def _bin_pointer(context, builder, aryty, ary, offset):
  """(pointer to the 4-lane vector at element offset of a 1D array, the
  vector type, its alignment in bytes)."""
  scalar = context.get_value_type(aryty.dtype)
  vector = ir.VectorType(scalar, 4)
  data = context.make_array(aryty)(context, builder, ary).data
  pointer = builder.bitcast(builder.gep(data, [offset]), vector.as_pointer())
  return pointer, vector, aryty.dtype.bitwidth // 8


def _splat(builder, vector, x):
  """The 4-lane vector (x, x, x, x)."""
  v = builder.insert_element(
      ir.Constant(vector, ir.Undefined), x, ir.Constant(_I32, 0)
  )
  lanes = ir.Constant(ir.VectorType(_I32, 4), [0, 0, 0, 0])
  return builder.shuffle_vector(v, v, lanes)


def _as_dtype(context, builder, signature, args, first):
  """args[first:] cast to the array's (signature.args[0]) dtype."""
  dtype = signature.args[0].dtype
  return [
      context.cast(builder, v, t, dtype)
      for v, t in zip(args[first:], signature.args[first:])
  ]


def _corners(k, k2, builder):
  """Offsets of the four bins of a lookup: k, k + 4 (bottom row), k2,
  k2 + 4 (top row)."""
  four = ir.Constant(k.type, 4)
  return (k, builder.add(k, four), k2, builder.add(k2, four))


@intrinsic
def bilinear_rgba(typingctx, table, k, k2, wx, wy):
  """(r, g, b, a) of the bilinear lookup in table [bins * 4] (flat, C
  order) of the bins at offsets k, k + 4 (bottom row) and k2, k2 + 4 (top
  row): bottom + wy (top - bottom), each row a + wx (b - a), per channel
  (``cached_native_kernels._lookup``'s arithmetic)."""
  del typingctx
  sig = types.UniTuple(table.dtype, 4)(table, k, k2, wx, wy)

  def codegen(context, builder, signature, args):
    ary, k, k2 = args[:3]
    wx, wy = _as_dtype(context, builder, signature, args, 3)
    rows = []
    for offset in _corners(k, k2, builder):
      pointer, vector, align = _bin_pointer(
          context, builder, signature.args[0], ary, offset
      )
      rows.append(builder.load(pointer, align=align))
    a, b, c, d = rows
    vx, vy = _splat(builder, vector, wx), _splat(builder, vector, wy)
    bottom = builder.fadd(a, builder.fmul(vx, builder.fsub(b, a)))
    top = builder.fadd(c, builder.fmul(vx, builder.fsub(d, c)))
    rgba = builder.fadd(bottom, builder.fmul(vy, builder.fsub(top, bottom)))
    lanes = [
        builder.extract_element(rgba, ir.Constant(_I32, i)) for i in range(4)
    ]
    return context.make_tuple(builder, signature.return_type, lanes)

  return sig, codegen


@intrinsic
def scatter_rgba(typingctx, acc, k, k2, w00, w01, w10, w11, r, g, b, a):
  """acc[bin + c] += w_bin x_c for the channels x = (r, g, b, a) of the
  bins at offsets k, k + 4, k2, k2 + 4 of acc [bins * 4] (flat), weights
  w00, w01, w10, w11: per channel acc + w_bin * x_c, as scalar code."""
  del typingctx
  sig = types.void(acc, k, k2, w00, w01, w10, w11, r, g, b, a)

  def codegen(context, builder, signature, args):
    ary, k, k2 = args[:3]
    values = _as_dtype(context, builder, signature, args, 3)
    weights, channels = values[:4], values[4:]
    x = None
    for offset, w in zip(_corners(k, k2, builder), weights):
      pointer, vector, align = _bin_pointer(
          context, builder, signature.args[0], ary, offset
      )
      if x is None:
        x = ir.Constant(vector, ir.Undefined)
        for i, value in enumerate(channels):
          x = builder.insert_element(x, value, ir.Constant(_I32, i))
      old = builder.load(pointer, align=align)
      new = builder.fadd(old, builder.fmul(_splat(builder, vector, w), x))
      builder.store(new, pointer, align=align)
    return context.get_dummy_value()

  return sig, codegen
