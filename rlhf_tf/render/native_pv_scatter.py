"""4-wide scatter-adds into the cotangent of a pre-integrated (P, V) table.

The reverse of a pre-integrated piece (``native_segment_math.piece_adjoint``)
adds its cotangent into the (P, V) rows of its ends' bins and of the bins
one gradient row up: as scalars 32 read-modify-writes per piece, the
largest part of a classified segment's adjoint after its loads
(``native_pv.piece_means``). A row's P_0..P_3 and V_0..V_3 are adjacent in
the table [bins, 8] (C order), so ``scatter_pv`` adds each as one 4-lane
vector, lane by lane the scalar code's operations in its precision (the
product in float64, added to the table's element in float64 and rounded to
its dtype), so results are bit for bit the scalar ones
(tests/test_native_pv_scatter.py).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from rlhf_tf.render.native_pv import F64, I32, V64


def _vector(builder, values):
  """The float64 4-lane vector of 4 float64 values."""
  out = ir.Constant(V64, ir.Undefined)
  for i, x in enumerate(values):
    out = builder.insert_element(out, x, ir.Constant(I32, i))
  return out


@intrinsic
def scatter_pv(typingctx, acc, k, bins_x, w_lo, w_hi, g_p, g_v):
  """acc[r, 0:4] += w g_p and acc[r, 4:8] += w g_v for r = k (w = w_lo)
  and r = k + bins_x (w = w_hi): acc [bins, 8] C order; g_p, g_v tuples of
  4 float64. Each product and sum in float64, as ``acc[r, c] += w * x``."""
  del typingctx
  if not (isinstance(acc, types.Array) and acc.ndim == 2 and acc.layout == 'C'):
    return None
  sig = types.void(acc, k, bins_x, w_lo, w_hi, g_p, g_v)

  def codegen(context, builder, signature, args):
    aryty = signature.args[0]
    ary, k, bins_x, w_lo, w_hi, g_p, g_v = args
    intp = context.get_value_type(types.intp)
    k, bins_x = (
        context.cast(builder, v, t, types.intp)
        for v, t in zip((k, bins_x), signature.args[1:3])
    )
    w_lo, w_hi = (
        context.cast(builder, v, t, types.float64)
        for v, t in zip((w_lo, w_hi), signature.args[3:5])
    )
    x = []
    for tup, tupty in zip((g_p, g_v), signature.args[5:7]):
      lanes = [
          context.cast(
              builder, builder.extract_value(tup, i), tupty[i], types.float64
          )
          for i in range(4)
      ]
      x.append(_vector(builder, lanes))
    scalar = context.get_value_type(aryty.dtype)
    vector = ir.VectorType(scalar, 4)
    align = aryty.dtype.bitwidth // 8
    data = context.make_array(aryty)(context, builder, ary).data
    for row, w in ((k, w_lo), (builder.add(k, bins_x), w_hi)):
      splat = builder.insert_element(
          ir.Constant(V64, ir.Undefined), w, ir.Constant(I32, 0)
      )
      splat = builder.shuffle_vector(
          splat, splat, ir.Constant(ir.VectorType(I32, 4), [0, 0, 0, 0])
      )
      for half in range(2):
        offset = builder.add(
            builder.mul(row, ir.Constant(intp, 8)),
            ir.Constant(intp, 4 * half),
        )
        pointer = builder.bitcast(
            builder.gep(data, [offset]), vector.as_pointer()
        )
        old = builder.load(pointer, align=align)
        if scalar != F64:
          old = builder.fpext(old, V64)
        new = builder.fadd(old, builder.fmul(splat, x[half]))
        if scalar != F64:
          new = builder.fptrunc(new, vector)
        builder.store(new, pointer, align=align)
    return context.get_dummy_value()

  return sig, codegen
