"""A segment's four pieces' optics as 4-lane vectors (one piece per lane),
for the native pre-integrated forward march (``native_segment_forward``).

``native_segment_plan.segment_forward`` classifies a segment's pieces one
after another (``native_segment_math.piece_optics``): per piece branches
on its length, its mean extinction and its optical depth (phi's series or
libm's expm1, a call that spills every vector register), three or four
divisions and the shading weight's clamps. The march is bound by the
latency of each segment's chain of them (a segment is more instructions
than the core's reorder window, so segments hardly overlap).
``segment_optics`` does piece_optics' formulas for the four pieces at once
in 4-lane float64 vectors (numba leaves LLVM's superword vectorizer off:
numba#8705), lane by lane the same operations in the same order and
precision, with selects for its branches:

- a piece of length 0 or of mean extinction 0 adds nothing
  (piece_optics: e = 0, lt = 0): its lane's e, a and lt are set to +0
  (adding +0 leaves every sum as it is, up to the sign of a zero);
- a = tau phi(tau) from phi's series where |tau| < _SERIES_Z, else
  a = -expm1(-tau) and phi = a / tau, with expm1 by ``_expm1``: in
  vectors, within 1 ulp of libm's (most values equal), libm's own beyond
  its range (-tau > _EXPM1_MAX: a negative extinction);
- the shading weight, lit and specular terms and min(., a) as
  ``native_segment_math._weight_value`` / ``piece_optics`` (min / max as
  numba's: min(x, y) = y < x ? y : x).

The pieces are then composited front to back in scalars, in
``segment_forward``'s order:

  e = sum_k T_k e_k,  T_{k+1} = T_k (1 - a_k),  a = 1 - T_4,
  lt = sum_k lt_k.

So a segment's colour, opacity and lt are segment_forward's bit for bit
where no piece takes expm1, else within its ulp (carried through 1 - a and
the sums: ~1e-16 of the segment's scale; float32 images hardly ever see
it): tests/test_native_segment_optics.py.
``optics_pair`` does two segments at once in 8-lane vectors (the same
operations lane by lane: each segment's results are its ``_optics4``'s
bit for bit; the forward pairs a ray's classified segments:
tests/test_native_segment_regs.py). The adjoint and the direct march
keep segment_forward (the adjoint needs each piece's e).
"""

from __future__ import annotations

import math

from llvmlite import ir
import numba
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_pv import F64, I32
from rlhf_tf.render.native_segment_math import (
    _SERIES_Z,
    _TINY_SIGMA,
)
from rlhf_tf.render.native_segment_plan import _lookup

_F64 = types.float64
_MEANS = types.UniTuple(_F64, 6)


def _vt(n):
  return ir.VectorType(F64, n)


def _vector(builder, values):
  """The len(values)-lane vector of float64 values."""
  out = ir.Constant(_vt(len(values)), ir.Undefined)
  for i, x in enumerate(values):
    out = builder.insert_element(out, x, ir.Constant(I32, i))
  return out


def _lanes(builder, vec):
  n = vec.type.count
  return [builder.extract_element(vec, ir.Constant(I32, i)) for i in range(n)]


def _const(x, n=4):
  return ir.Constant(_vt(n), [ir.Constant(F64, float(x))] * n)


def _splat(builder, x, n):
  return _vector(builder, [x] * n)


def _min(builder, x, y):
  """numba's min(x, y) lane by lane: y < x ? y : x."""
  return builder.select(builder.fcmp_ordered('<', y, x), y, x)


def _max(builder, x, y):
  """numba's max(x, y) lane by lane: y > x ? y : x."""
  return builder.select(builder.fcmp_ordered('>', y, x), y, x)


def _abs(builder, x):
  n = x.type.count
  fabs = cgutils.get_or_insert_function(
      builder.module, ir.FunctionType(_vt(n), [_vt(n)]), f'llvm.fabs.v{n}f64'
  )
  return builder.call(fabs, [x])


# expm1 by range reduction (fdlibm's constants): x = k ln2 + r, |r| <=
# ln2 / 2, expm1(r) = r + r^2 (1/2! + r/3! + ... + r^11/13!) (Taylor to
# r^13: the rest is below 2^-53 of it), expm1(x) = 2^k expm1(r) + (2^k - 1).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_TAYLOR = [1.0 / math.factorial(n) for n in range(2, 14)]
# Below it expm1 is -1.0 to the last bit; above it (or NaN) libm's.
_EXPM1_MIN = -50.0
_EXPM1_MAX = 0.34


def _expm1(builder, x):
  """expm1(x) of a 4-lane vector, within 1 ulp of libm's for x <=
  _EXPM1_MAX (-1 below _EXPM1_MIN: |k| <= 72 above it, 2^k a normal
  number); undefined above."""
  n = x.type.count
  rint = cgutils.get_or_insert_function(
      builder.module, ir.FunctionType(_vt(n), [_vt(n)]), f'llvm.rint.v{n}f64'
  )
  k = builder.call(rint, [builder.fmul(x, _const(_INV_LN2, n))])
  r = builder.fsub(
      builder.fsub(x, builder.fmul(k, _const(_LN2_HI, n))),
      builder.fmul(k, _const(_LN2_LO, n)),
  )
  # q by Estrin's scheme: 8 operations deep (Horner's: 22).
  r2 = builder.fmul(r, r)
  r4 = builder.fmul(r2, r2)
  r8 = builder.fmul(r4, r4)
  c = [_const(x, n) for x in _TAYLOR]
  pairs = [
      builder.fadd(c[2 * i], builder.fmul(c[2 * i + 1], r)) for i in range(6)
  ]
  quads = [
      builder.fadd(pairs[2 * i], builder.fmul(pairs[2 * i + 1], r2))
      for i in range(3)
  ]
  q = builder.fadd(
      builder.fadd(quads[0], builder.fmul(quads[1], r4)),
      builder.fmul(quads[2], r8),
  )
  p = builder.fadd(r, builder.fmul(r2, q))
  i64 = ir.VectorType(ir.IntType(64), n)
  bits = builder.shl(
      builder.add(builder.fptosi(k, i64), ir.Constant(i64, [1023] * n)),
      ir.Constant(i64, [52] * n),
  )
  two_k = builder.bitcast(bits, _vt(n))
  scaled = builder.fadd(
      builder.fmul(two_k, p), builder.fsub(two_k, _const(1.0, n))
  )
  out = builder.select(builder.fcmp_ordered('==', k, _const(0.0, n)), p, scaled)
  low = builder.fcmp_ordered('<', x, _const(_EXPM1_MIN, n))
  return builder.select(low, _const(-1.0, n), out)


def _lane_optics(builder, means, ls, ds, ss, shading, ka, kd, ks):
  """(e [3], a, lt) vectors of n = len(ls) pieces (lanes) from their means
  (n 6-tuples), lengths (n), and their segments' points' d and s (one
  5-list per 4 lanes); piece_optics' formulas lane by lane."""
  n = len(ls)
  zero, one = _const(0.0, n), _const(1.0, n)
  mean = [_vector(builder, [m[c] for m in means]) for c in range(6)]
  mean0, sig_f, sig_b = mean[0], mean[4], mean[5]
  length = _vector(builder, ls)
  active = builder.and_(
      builder.fcmp_unordered('!=', length, zero),
      builder.fcmp_unordered('!=', mean0, zero),
  )
  tau = builder.fmul(length, mean0)
  # phi's series (native_segment_math._phi), every lane.
  z = tau
  q4 = builder.fsub(one, builder.fdiv(z, _const(5.0, n)))
  q3 = builder.fsub(one, builder.fmul(builder.fdiv(z, _const(4.0, n)), q4))
  q2 = builder.fsub(one, builder.fmul(builder.fdiv(z, _const(3.0, n)), q3))
  phi_s = builder.fsub(one, builder.fmul(builder.fdiv(z, _const(2.0, n)), q2))
  a_s = builder.fmul(tau, phi_s)
  series = builder.fcmp_ordered('<', _abs(builder, tau), _const(_SERIES_Z, n))
  # a = -expm1(-tau) in the lanes beyond the series (_expm1; libm's per
  # lane where it does not apply: -tau > _EXPM1_MAX or NaN).
  need = builder.and_(active, builder.not_(series))
  x = builder.fneg(tau)
  slot = cgutils.alloca_once(builder, _vt(n))
  builder.store(builder.select(need, builder.fneg(_expm1(builder, x)), a_s),
                slot)  # fmt: skip
  beyond = builder.and_(
      need, builder.fcmp_unordered('>', x, _const(_EXPM1_MAX, n))
  )
  any_beyond = builder.icmp_unsigned(
      '!=',
      builder.bitcast(beyond, ir.IntType(n)),
      ir.Constant(ir.IntType(n), 0),
  )
  with builder.if_then(any_beyond, likely=False):
    fnty = ir.FunctionType(F64, [F64])
    libm = cgutils.insert_pure_function(builder.module, fnty, name='expm1')
    for i in range(n):
      lane = ir.Constant(I32, i)
      with builder.if_then(builder.extract_element(beyond, lane)):
        x_i = builder.extract_element(x, lane)
        a_i = builder.fneg(builder.call(libm, [x_i]))
        builder.store(builder.insert_element(builder.load(slot), a_i, lane),
                      slot)  # fmt: skip
  a_all = builder.load(slot)
  phi = builder.select(series, phi_s, builder.fdiv(a_all, tau))
  scale = builder.fmul(length, phi)
  e = [builder.fmul(scale, mean[c]) for c in (1, 2, 3)]
  plain = builder.block
  with builder.if_then(shading):
    # native_segment_math._weight_value.
    jump = builder.fsub(sig_b, sig_f)
    c = builder.fdiv(builder.fsub(sig_b, mean0), jump)
    ok_j = builder.fcmp_ordered(
        '>', _abs(builder, jump), _const(_TINY_SIGMA, n)
    )
    c = builder.select(ok_j, c, _const(0.5, n))
    c = _min(builder, one, _max(builder, zero, c))
    two_m = builder.fmul(_const(2.0, n), mean0)
    shift = builder.fdiv(
        builder.fmul(builder.fmul(jump, c), builder.fsub(one, c)), two_m
    )
    ok_m = builder.fcmp_ordered(
        '>', _abs(builder, two_m), _const(_TINY_SIGMA, n)
    )
    shift = builder.select(ok_m, shift, zero)
    w = _min(
        builder, one, _max(builder, zero, builder.fadd(_const(0.5, n), shift))
    )
    d_f = _vector(builder, [x for p in ds for x in p[:4]])
    d_b = _vector(builder, [x for p in ds for x in p[1:]])
    s_f = _vector(builder, [x for p in ss for x in p[:4]])
    s_b = _vector(builder, [x for p in ss for x in p[1:]])
    lit = builder.fadd(
        _splat(builder, ka, n),
        builder.fmul(
            _splat(builder, kd, n),
            builder.fadd(d_f, builder.fmul(w, builder.fsub(d_b, d_f))),
        ),
    )
    spec = builder.fmul(
        builder.fmul(
            _splat(builder, ks, n),
            builder.fadd(s_f, builder.fmul(w, builder.fsub(s_b, s_f))),
        ),
        a_all,
    )
    lit_e = [
        _min(builder, builder.fadd(builder.fmul(e_c, lit), spec), a_all)
        for e_c in e
    ]
    shaded = builder.block
  merged = []
  for plain_c, lit_c in zip(e, lit_e):
    either = builder.phi(_vt(n))
    either.add_incoming(plain_c, plain)
    either.add_incoming(lit_c, shaded)
    merged.append(either)
  # A piece of length 0 or mean extinction 0 adds nothing (piece_optics).
  e = [builder.select(active, e_c, zero) for e_c in merged]
  a = builder.select(active, a_all, zero)
  lt = builder.select(active, builder.fneg(tau), zero)
  return e, a, lt


def _composite(builder, e, a, lt, first=0):
  """(lt, e_0, e_1, e_2, a) of the segment in lanes first .. first + 3 of
  _lane_optics' vectors: front to back in scalars, in segment_forward's
  order."""
  e_k = [_lanes(builder, x)[first : first + 4] for x in e]
  a_k = _lanes(builder, a)[first : first + 4]
  lt_k = _lanes(builder, lt)[first : first + 4]
  one_s = ir.Constant(F64, 1.0)
  total = [ir.Constant(F64, 0.0)] * 3
  trans = one_s
  lt_sum = ir.Constant(F64, 0.0)
  for k in range(4):
    lt_sum = builder.fadd(lt_sum, lt_k[k])
    for c in range(3):
      total[c] = builder.fadd(total[c], builder.fmul(trans, e_k[c][k]))
    trans = builder.fmul(trans, builder.fsub(one_s, a_k[k]))
  return [lt_sum, *total, builder.fsub(one_s, trans)]


@intrinsic
def _optics4(typingctx, m0, m1, m2, m3, lengths, d, s, shading, ka, kd, ks):
  """(lt, e_0, e_1, e_2, a) of a segment from its pieces' piece_lookup
  means m0..m3 (6-tuples), lengths (4-tuple), the five points' d and s
  (5-tuples; read only when shading) and the optics (module docstring)."""
  del typingctx
  if not all(m == _MEANS for m in (m0, m1, m2, m3)):
    return None
  if lengths != types.UniTuple(_F64, 4):
    return None
  if d != types.UniTuple(_F64, 5) or s != types.UniTuple(_F64, 5):
    return None
  sig = types.UniTuple(_F64, 5)(
      m0, m1, m2, m3, lengths, d, s, types.boolean, _F64, _F64, _F64
  )

  def codegen(context, builder, signature, args):
    means = [cgutils.unpack_tuple(builder, m, 6) for m in args[:4]]
    ls = cgutils.unpack_tuple(builder, args[4], 4)
    ds = cgutils.unpack_tuple(builder, args[5], 5)
    ss = cgutils.unpack_tuple(builder, args[6], 5)
    out = _composite(
        builder,
        *_lane_optics(builder, means, ls, [ds], [ss], *args[7:11]),
    )
    return context.make_tuple(builder, signature.return_type, out)

  return sig, codegen


_PIECES = types.UniTuple(_MEANS, 4)
_SEGMENT = types.UniTuple(_F64, 10)


@intrinsic
def optics_pair(typingctx, means_a, means_b, lengths, d, s, shading, ka, kd,
                ks):  # fmt: skip
  """_optics4 of two segments at once, in 8-lane vectors: (lt, e_0, e_1,
  e_2, a) of segment a then of b, from their pieces' means (4-tuples of
  piece_lookup's 6-tuples), lengths (8-tuple: a's, then b's) and points'
  d and s (10-tuples: a's 5, then b's). Lane by lane the operations of
  _optics4: each segment's results are its _optics4's bit for bit."""
  del typingctx
  if means_a != _PIECES or means_b != _PIECES:
    return None
  if lengths != types.UniTuple(_F64, 8):
    return None
  if d != _SEGMENT or s != _SEGMENT:
    return None
  sig = _SEGMENT(means_a, means_b, lengths, d, s, types.boolean, _F64, _F64,
                 _F64)  # fmt: skip

  def codegen(context, builder, signature, args):
    means = [
        cgutils.unpack_tuple(builder, m, 6)
        for pieces in args[:2]
        for m in cgutils.unpack_tuple(builder, pieces, 4)
    ]
    ls = cgutils.unpack_tuple(builder, args[2], 8)
    ds = cgutils.unpack_tuple(builder, args[3], 10)
    ss = cgutils.unpack_tuple(builder, args[4], 10)
    vectors = _lane_optics(
        builder, means, ls, [ds[:5], ds[5:]], [ss[:5], ss[5:]], *args[5:9]
    )
    out = _composite(builder, *vectors, 0) + _composite(builder, *vectors, 4)
    return context.make_tuple(builder, signature.return_type, out)

  return sig, codegen


@numba.njit(**HELPER)
def segment_optics(table, bins_x, bins_y, points, lengths, optics):
  """(lt, e_0, e_1, e_2, a) of a split segment (points [5, 4], lengths
  [4]: native_segment_plan.split): ``segment_forward``'s lt and e[4], its
  pieces' table reads (``_lookup``) first, their optics 4 lanes at once
  (module docstring). optics: (shading, ka, kd, ks)."""
  shading, ka, kd, ks = optics
  return _optics4(
      _lookup(table, bins_x, bins_y, points, lengths, 0),
      _lookup(table, bins_x, bins_y, points, lengths, 1),
      _lookup(table, bins_x, bins_y, points, lengths, 2),
      _lookup(table, bins_x, bins_y, points, lengths, 3),
      (lengths[0], lengths[1], lengths[2], lengths[3]),
      (points[0, 2], points[1, 2], points[2, 2], points[3, 2], points[4, 2]),
      (points[0, 3], points[1, 3], points[2, 3], points[3, 3], points[4, 3]),
      shading,
      ka,
      kd,
      ks,
  )


@intrinsic
def expm1_lanes(typingctx, x):
  """_expm1 of a 4-tuple of float64 (its test's entry)."""
  del typingctx
  if x != types.UniTuple(_F64, 4):
    return None

  def codegen(context, builder, signature, args):
    vec = _vector(builder, cgutils.unpack_tuple(builder, args[0], 4))
    out = _lanes(builder, _expm1(builder, vec))
    return context.make_tuple(builder, signature.return_type, out)

  return x(x), codegen
