"""4-wide trilinear sampling of a packed volume in numba kernels.

A packed voxel (``sampling.pack_volume``: HU, gradient z, y, x) is one
4-lane vector of the volume [voxels, 4] (C order), so a trilinear sample of
all four channels is 8 vector loads and the 7 nested lerps of one channel
(numba leaves LLVM's superword vectorizer off: numba#8705): the HU that
pre-integration's ends need comes with its gradient for the same
instructions. ``trilinear_packed`` also returns the HU's partials along
the voxel axes (the lerps' differences), from which the march takes the
exact slope along a ray (``segment_sampling._hu_slope_gradient``), and
``structure_terms`` the structure-tensor shading terms from the same 8
voxels (per-corner products 4 corners to a vector); ``prefetch_corners``
asks the caches for a later sample's voxels, ``prefetch_row`` for a table
row a later lookup will read. All in float64 (a
float32 volume is widened on load), in the order of the scalar code they
replace (tests/test_native_trilinear.py).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from rlhf_tf.render.native_pv import F64, I32, splat, V64


@intrinsic
def trilinear_packed(typingctx, vol, base, sz, sy, sx, fz, fy, fx):
  """(hu, gz, gy, gx, dhu_z, dhu_y, dhu_x), float64: the trilinear sample
  of vol [voxels, 4] (C order) at lower corner voxel base (flat), strides
  sz, sy, sx (voxels), fractions fz, fy, fx, as nested lerps per channel

    x_ab = v_ab0 + fx (v_ab1 - v_ab0),  y_a = x_a0 + fy (x_a1 - x_a0),
    value = y_0 + fz (y_1 - y_0),

  and the HU's partials along z, y, x (per unit voxel coordinate):
  y_1 - y_0, (x_01 - x_00) + fz ((x_11 - x_10) - (x_01 - x_00)) and
  d_0 + fz (d_1 - d_0), d_a = (v_a01 - v_a00) + fy ((v_a11 - v_a10) -
  (v_a01 - v_a00))."""
  del typingctx
  if not (isinstance(vol, types.Array) and vol.ndim == 2 and vol.layout == 'C'):
    return None
  sig = types.UniTuple(types.float64, 7)(vol, base, sz, sy, sx, fz, fy, fx)

  def codegen(context, builder, signature, args):
    aryty = signature.args[0]
    base, sz, sy, sx = (
        context.cast(builder, v, t, types.intp)
        for v, t in zip(args[1:5], signature.args[1:5])
    )
    fz, fy, fx = (
        splat(builder, context.cast(builder, v, t, types.float64))
        for v, t in zip(args[5:8], signature.args[5:8])
    )
    scalar = context.get_value_type(aryty.dtype)
    vector = ir.VectorType(scalar, 4)
    align = aryty.dtype.bitwidth // 8
    data = context.make_array(aryty)(context, builder, args[0]).data
    four = ir.Constant(base.type, 4)

    def load(voxel):
      pointer = builder.bitcast(
          builder.gep(data, [builder.mul(voxel, four)]), vector.as_pointer()
      )
      x = builder.load(pointer, align=align)
      return x if scalar == F64 else builder.fpext(x, V64)

    def lerp(a, b, f):
      return builder.fadd(a, builder.fmul(f, builder.fsub(b, a)))

    v = {}
    for z in range(2):
      for y in range(2):
        row = base
        if z:
          row = builder.add(row, sz)
        if y:
          row = builder.add(row, sy)
        v[z, y, 0] = load(row)
        v[z, y, 1] = load(builder.add(row, sx))
    x = {
        (z, y): lerp(v[z, y, 0], v[z, y, 1], fx) for z in (0, 1) for y in (0, 1)
    }
    y0 = lerp(x[0, 0], x[0, 1], fy)
    y1 = lerp(x[1, 0], x[1, 1], fy)
    value = lerp(y0, y1, fz)
    dz = builder.fsub(y1, y0)
    dy = lerp(
        builder.fsub(x[0, 1], x[0, 0]), builder.fsub(x[1, 1], x[1, 0]), fz
    )
    dx = {
        z: lerp(
            builder.fsub(v[z, 0, 1], v[z, 0, 0]),
            builder.fsub(v[z, 1, 1], v[z, 1, 0]),
            fy,
        )
        for z in (0, 1)
    }
    dx = lerp(dx[0], dx[1], fz)
    zero = ir.Constant(I32, 0)
    lanes = [
        builder.extract_element(value, ir.Constant(I32, i)) for i in range(4)
    ]
    lanes += [builder.extract_element(p, zero) for p in (dz, dy, dx)]
    return context.make_tuple(builder, signature.return_type, lanes)

  return sig, codegen


@intrinsic
def structure_terms(typingctx, vol, base, sz, sy, sx, fz, fy, fx, dz, dy, dx):
  """(q, trace J), float64: the gradient's structure tensor J = sum_c w_c
  g_c g_c^T seen along (dz, dy, dx), q = sum_c w_c (g_c . l)^2, and its
  trace sum_c w_c |g_c|^2 over the 8 voxels of a trilinear sample
  (``sampling.trilinear_packed``'s view_dir terms; arguments as
  ``trilinear_packed``'s). Corner c = 4 z + 2 y + x has weight (h_z h_y) h_x
  (h = f or 1 - f); the per-corner products run 4 corners to a vector
  (transposed by shuffles), the sums over c in the scalar loop's order."""
  del typingctx
  if not (isinstance(vol, types.Array) and vol.ndim == 2 and vol.layout == 'C'):
    return None
  sig = types.UniTuple(types.float64, 2)(
      vol, base, sz, sy, sx, fz, fy, fx, dz, dy, dx
  )

  def codegen(context, builder, signature, args):
    aryty = signature.args[0]
    base, sz, sy, sx = (
        context.cast(builder, v, t, types.intp)
        for v, t in zip(args[1:5], signature.args[1:5])
    )
    f = [
        context.cast(builder, v, t, types.float64)
        for v, t in zip(args[5:11], signature.args[5:11])
    ]
    fz, fy, fx = f[:3]
    scalar = context.get_value_type(aryty.dtype)
    vector = ir.VectorType(scalar, 4)
    align = aryty.dtype.bitwidth // 8
    data = context.make_array(aryty)(context, builder, args[0]).data
    four = ir.Constant(base.type, 4)
    one = ir.Constant(F64, 1.0)
    h = {
        a: (builder.fsub(one, x), x)
        for a, x in (('z', fz), ('y', fy), ('x', fx))
    }
    corners, weights = [], []
    for c in range(8):
      voxel = base
      for bit, stride in ((4, sz), (2, sy), (1, sx)):
        if c & bit:
          voxel = builder.add(voxel, stride)
      pointer = builder.bitcast(
          builder.gep(data, [builder.mul(voxel, four)]), vector.as_pointer()
      )
      x = builder.load(pointer, align=align)
      corners.append(x if scalar == F64 else builder.fpext(x, V64))
      w = builder.fmul(h['z'][c >> 2 & 1], h['y'][c >> 1 & 1])
      weights.append(builder.fmul(w, h['x'][c & 1]))

    def shuffle(a, b, lanes):
      mask = ir.Constant(ir.VectorType(I32, 4), lanes)
      return builder.shuffle_vector(a, b, mask)

    q_lanes, t_lanes = [], []
    dz, dy, dx = (splat(builder, x) for x in f[3:])
    for g in range(2):
      a0, a1, a2, a3 = corners[4 * g : 4 * g + 4]
      zy0, zy1 = shuffle(a0, a1, [1, 5, 2, 6]), shuffle(a2, a3, [1, 5, 2, 6])
      x0, x1 = shuffle(a0, a1, [3, 7, 3, 7]), shuffle(a2, a3, [3, 7, 3, 7])
      gz = shuffle(zy0, zy1, [0, 1, 4, 5])
      gy = shuffle(zy0, zy1, [2, 3, 6, 7])
      gx = shuffle(x0, x1, [0, 1, 4, 5])
      w = ir.Constant(V64, ir.Undefined)
      for i in range(4):
        w = builder.insert_element(w, weights[4 * g + i], ir.Constant(I32, i))
      gl = builder.fadd(
          builder.fadd(builder.fmul(gz, dz), builder.fmul(gy, dy)),
          builder.fmul(gx, dx),
      )
      sq = builder.fadd(
          builder.fadd(builder.fmul(gz, gz), builder.fmul(gy, gy)),
          builder.fmul(gx, gx),
      )
      q = builder.fmul(builder.fmul(w, gl), gl)
      t = builder.fmul(w, sq)
      for i in range(4):
        q_lanes.append(builder.extract_element(q, ir.Constant(I32, i)))
        t_lanes.append(builder.extract_element(t, ir.Constant(I32, i)))
    q = t = ir.Constant(F64, 0.0)
    for i in range(8):
      q = builder.fadd(q, q_lanes[i])
      t = builder.fadd(t, t_lanes[i])
    return context.make_tuple(builder, signature.return_type, [q, t])

  return sig, codegen


@intrinsic
def prefetch_corners(typingctx, vol, base, sz, sy, sx):
  """Asks the caches for the 8 voxels of a trilinear sample of vol
  [voxels, 4] at lower corner base (strides sz, sy, sx): per (z, y) row
  the first voxel's first channel and its x neighbour's last
  (llvm.prefetch: read, all cache levels). A hint: no result, no load
  into registers, no fault even outside the array."""
  del typingctx
  if not (isinstance(vol, types.Array) and vol.ndim == 2 and vol.layout == 'C'):
    return None
  sig = types.none(vol, base, sz, sy, sx)

  def codegen(context, builder, signature, args):
    aryty = signature.args[0]
    base, sz, sy, sx = (
        context.cast(builder, v, t, types.intp)
        for v, t in zip(args[1:5], signature.args[1:5])
    )
    data = context.make_array(aryty)(context, builder, args[0]).data
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p, I32, I32, I32])
    fn = cgutils.get_or_insert_function(
        builder.module, fnty, 'llvm.prefetch.p0'
    )
    read_all_levels = [ir.Constant(I32, v) for v in (0, 3, 1)]
    four = ir.Constant(base.type, 4)
    three = ir.Constant(base.type, 3)
    for z in range(2):
      for y in range(2):
        row = base
        if z:
          row = builder.add(row, sz)
        if y:
          row = builder.add(row, sy)
        first = builder.mul(row, four)
        last = builder.add(builder.mul(builder.add(row, sx), four), three)
        for element in (first, last):
          pointer = builder.bitcast(builder.gep(data, [element]), i8p)
          builder.call(fn, [pointer] + read_all_levels)
    return context.get_dummy_value()

  return sig, codegen


@intrinsic
def prefetch_row(typingctx, array, row):
  """Asks the caches for row ``row`` of a C-order 2-D array (its first and
  last element: a (P, V) table row of 8 float32 or float64 spans one or
  two cache lines). A hint, as ``prefetch_corners``'."""
  del typingctx
  if not (
      isinstance(array, types.Array) and array.ndim == 2 and array.layout == 'C'
  ):
    return None
  sig = types.none(array, row)

  def codegen(context, builder, signature, args):
    aryty = signature.args[0]
    row = context.cast(builder, args[1], signature.args[1], types.intp)
    ary = context.make_array(aryty)(context, builder, args[0])
    width = builder.extract_value(ary.shape, 1)
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p, I32, I32, I32])
    fn = cgutils.get_or_insert_function(
        builder.module, fnty, 'llvm.prefetch.p0'
    )
    read_all_levels = [ir.Constant(I32, v) for v in (0, 3, 1)]
    first = builder.mul(row, width)
    last = builder.add(first, builder.sub(width, ir.Constant(width.type, 1)))
    for element in (first, last):
      pointer = builder.bitcast(builder.gep(ary.data, [element]), i8p)
      builder.call(fn, [pointer] + read_all_levels)
    return context.get_dummy_value()

  return sig, codegen
