"""The 4-wide trilinear sample (rlhf_tf.render.native_trilinear) gives, bit
for bit, the scalar nested lerps of each channel and of the HU's partials
(float64, a float32 volume widened), which are the trilinear field's value
and derivatives (finite differences)."""

import numba
import numpy as np
import pytest

from rlhf_tf.render.native_trilinear import (
    prefetch_corners,
    prefetch_row,
    structure_terms,
    trilinear_packed,
)


@numba.njit
def _vector(vol, base, sz, sy, sx, fz, fy, fx):
  return trilinear_packed(vol, base, sz, sy, sx, fz, fy, fx)


@numba.njit
def _scalar(vol, base, sz, sy, sx, fz, fy, fx):
  out = np.zeros(7)
  for ch in range(4):
    v = np.zeros((2, 2, 2))
    for z in range(2):
      for y in range(2):
        for x in range(2):
          v[z, y, x] = np.float64(vol[base + z * sz + y * sy + x * sx, ch])
    x00 = v[0, 0, 0] + fx * (v[0, 0, 1] - v[0, 0, 0])
    x01 = v[0, 1, 0] + fx * (v[0, 1, 1] - v[0, 1, 0])
    x10 = v[1, 0, 0] + fx * (v[1, 0, 1] - v[1, 0, 0])
    x11 = v[1, 1, 0] + fx * (v[1, 1, 1] - v[1, 1, 0])
    y0 = x00 + fy * (x01 - x00)
    y1 = x10 + fy * (x11 - x10)
    out[ch] = y0 + fz * (y1 - y0)
    if ch == 0:
      out[4] = y1 - y0
      out[5] = (x01 - x00) + fz * ((x11 - x10) - (x01 - x00))
      d0 = (v[0, 0, 1] - v[0, 0, 0]) + fy * (
          (v[0, 1, 1] - v[0, 1, 0]) - (v[0, 0, 1] - v[0, 0, 0])
      )
      d1 = (v[1, 0, 1] - v[1, 0, 0]) + fy * (
          (v[1, 1, 1] - v[1, 1, 0]) - (v[1, 0, 1] - v[1, 0, 0])
      )
      out[6] = d0 + fz * (d1 - d0)
  return out


@numba.njit
def _terms(vol, base, sz, sy, sx, fz, fy, fx, d):
  return structure_terms(vol, base, sz, sy, sx, fz, fy, fx, d[0], d[1], d[2])


@numba.njit
def _scalar_terms(vol, base, sz, sy, sx, fz, fy, fx, d):
  """sampling.trilinear_packed's q, trace as a loop over the corners."""
  q, trace = 0.0, 0.0
  for c in range(8):
    hz = fz if c & 4 else 1.0 - fz
    hy = fy if c & 2 else 1.0 - fy
    hx = fx if c & 1 else 1.0 - fx
    w = hz * hy * hx
    k = (
        base
        + (sz if c & 4 else 0)
        + (sy if c & 2 else 0)
        + (sx if c & 1 else 0)
    )
    az, ay, ax = (
        np.float64(vol[k, 1]),
        np.float64(vol[k, 2]),
        np.float64(vol[k, 3]),
    )
    gl = az * d[0] + ay * d[1] + ax * d[2]
    q += w * gl * gl
    trace += w * (az * az + ay * ay + ax * ax)
  return q, trace


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_vector_sample_is_the_scalar_lerps(dtype):
  rng = np.random.default_rng(0)
  shape = (4, 5, 6)
  vol = rng.normal(size=(np.prod(shape), 4)).astype(dtype) * 300
  sz, sy, sx = shape[1] * shape[2], shape[2], 1
  for _ in range(30):
    iz, iy, ix = (rng.integers(0, n - 1) for n in shape)
    base = (iz * shape[1] + iy) * shape[2] + ix
    fz, fy, fx = rng.uniform(0, 1, 3)
    args = (vol, base, sz, sy, sx, fz, fy, fx)
    np.testing.assert_array_equal(np.array(_vector(*args)), _scalar(*args))
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    np.testing.assert_array_equal(
        _terms(*args, d), _scalar_terms(*args, d.astype(np.float64))
    )


def test_partials_are_the_fields_derivatives():
  rng = np.random.default_rng(1)
  vol = rng.normal(size=(8, 4))  # One cell: 2 x 2 x 2 voxels.
  f = rng.uniform(0.1, 0.9, 3)
  h = 1e-6
  partials = _vector(vol, 0, 4, 2, 1, *f)[4:]
  for a in range(3):
    up, down = f.copy(), f.copy()
    up[a] += h
    down[a] -= h
    fd = _vector(vol, 0, 4, 2, 1, *up)[0] - _vector(vol, 0, 4, 2, 1, *down)[0]
    np.testing.assert_allclose(partials[a], fd / (2 * h), rtol=1e-7)


@numba.njit
def _prefetched_sample(vol, base, sz, sy, sx, fz, fy, fx):
  prefetch_corners(vol, base, sz, sy, sx)
  return trilinear_packed(vol, base, sz, sy, sx, fz, fy, fx)


def test_prefetch_asks_for_both_ends_of_each_row_and_changes_nothing():
  rng = np.random.default_rng(2)
  shape = (3, 4, 5)
  vol = rng.normal(size=(np.prod(shape), 4)).astype(np.float32)
  sz, sy = shape[1] * shape[2], shape[2]
  for sx in (1, 0):  # 0: an axis of one voxel (no x neighbour).
    base = (1 * shape[1] + 2) * shape[2] + 3
    args = (vol, base, sz, sy, sx, 0.2, 0.7, 0.4)
    assert _prefetched_sample(*args) == _vector(*args)
  ir = _prefetched_sample.inspect_llvm(_prefetched_sample.signatures[0])
  assert ir.count('call void @llvm.prefetch') == 8


@numba.njit
def _prefetched_row(table, row):
  prefetch_row(table, row)
  return table[row].sum()


def test_prefetch_row_asks_for_both_ends_of_the_row_and_changes_nothing():
  table = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
  for row in range(6):
    assert _prefetched_row(table, row) == table[row].sum()
  ir = _prefetched_row.inspect_llvm(_prefetched_row.signatures[0])
  assert ir.count('call void @llvm.prefetch') == 2
