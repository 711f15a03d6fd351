"""4-wide loads of a pre-integrated (P, V) table in numba kernels.

A piece of a pre-integrated segment (``native_segment_math.piece_forward``)
reads the (P, V) rows of two bins (its ends') and of the bins one gradient
row up: 4 rows x 8 channels, as scalars 32 loads and ~100 arithmetic
instructions, most of a classified piece's cost. A row's P_0..P_3 and
V_0..V_3 are adjacent in the table [bins, 8] (C order), so each is one
4-lane vector: ``piece_means`` emits LLVM vector loads and arithmetic for
them (numba leaves LLVM's superword vectorizer off: numba#8705), lane by
lane the same operations in the same order and precision as the scalar
code (table-dtype differences of a row pair, then float64), so results are
bit for bit the scalar ones (tests/test_native_pv.py). As
``native_rgba`` does for RGBA point-sampling tables.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

I32 = ir.IntType(32)
F64 = ir.DoubleType()
V64 = ir.VectorType(F64, 4)


def splat(builder, x):
  """The float64 4-lane vector (x, x, x, x) (shared by the native_*
  intrinsics)."""
  v = builder.insert_element(
      ir.Constant(V64, ir.Undefined), x, ir.Constant(I32, 0)
  )
  return builder.shuffle_vector(
      v, v, ir.Constant(ir.VectorType(I32, 4), [0, 0, 0, 0])
  )


@intrinsic
def piece_means(typingctx, table, k_f, k_b, bins_x, fv, fu_f, fu_b, du, ok):
  """(mean_0, mean_1, mean_2, mean_3, V_0 at f, V_0 at b), float64, of a
  piece (``native_segment_math.piece_forward``'s formulas), from table
  [bins, 8] (P_0..3, V_0..3 per bin; C order) at its ends' flat bins k_f,
  k_b (and k + bins_x, the row above), lerped at fv:

    PV_e = T[k_e] + fv (T[k_e + bins_x] - T[k_e])   (difference in the
           table's dtype, as the scalar code's)
    G_e  = P_e + fu_e V_e,
    mean = ok ? ((G_b - G_f)_0 / du, (G_b - G_f)_{1..3} (1 / du))
              : (V_f + V_b) / 2.
  """
  del typingctx
  if not (
      isinstance(table, types.Array) and table.ndim == 2 and table.layout == 'C'
  ):
    return None
  sig = types.UniTuple(types.float64, 6)(
      table, k_f, k_b, bins_x, fv, fu_f, fu_b, du, ok
  )

  def codegen(context, builder, signature, args):
    aryty = signature.args[0]
    ary = args[0]
    k_f, k_b, bins_x = (
        context.cast(builder, v, t, types.intp)
        for v, t in zip(args[1:4], signature.args[1:4])
    )
    fv, fu_f, fu_b, du = (
        context.cast(builder, v, t, types.float64)
        for v, t in zip(args[4:8], signature.args[4:8])
    )
    ok = context.cast(builder, args[8], signature.args[8], types.boolean)
    scalar = context.get_value_type(aryty.dtype)
    vector = ir.VectorType(scalar, 4)
    align = aryty.dtype.bitwidth // 8
    data = context.make_array(aryty)(context, builder, ary).data
    intp = context.get_value_type(types.intp)

    def load(row, half):
      offset = builder.add(
          builder.mul(row, ir.Constant(intp, 8)), ir.Constant(intp, 4 * half)
      )
      pointer = builder.bitcast(
          builder.gep(data, [offset]), vector.as_pointer()
      )
      return builder.load(pointer, align=align)

    def to_f64(x):
      return x if scalar == F64 else builder.fpext(x, V64)

    splat_fv = splat(builder, fv)

    def lerp(k, half):  # a + fv (b - a), b - a in the table's dtype.
      a = load(k, half)
      b = load(builder.add(k, bins_x), half)
      diff = to_f64(builder.fsub(b, a))
      return builder.fadd(to_f64(a), builder.fmul(splat_fv, diff))

    p_f, v_f = lerp(k_f, 0), lerp(k_f, 1)
    p_b, v_b = lerp(k_b, 0), lerp(k_b, 1)
    g_f = builder.fadd(p_f, builder.fmul(splat(builder, fu_f), v_f))
    g_b = builder.fadd(p_b, builder.fmul(splat(builder, fu_b), v_b))
    dg = builder.fsub(g_b, g_f)
    inv_du = builder.fdiv(ir.Constant(F64, 1.0), du)
    by_div = builder.fdiv(dg, splat(builder, du))
    by_mul = builder.fmul(dg, splat(builder, inv_du))
    slope = builder.shuffle_vector(
        by_div, by_mul, ir.Constant(ir.VectorType(I32, 4), [0, 5, 6, 7])
    )
    flat = builder.fmul(
        splat(builder, ir.Constant(F64, 0.5)), builder.fadd(v_f, v_b)
    )
    mean = builder.select(ok, slope, flat)
    zero = ir.Constant(I32, 0)
    lanes = [
        builder.extract_element(mean, ir.Constant(I32, i)) for i in range(4)
    ]
    lanes += [builder.extract_element(v_f, zero)]
    lanes += [builder.extract_element(v_b, zero)]
    return context.make_tuple(builder, signature.return_type, lanes)

  return sig, codegen
