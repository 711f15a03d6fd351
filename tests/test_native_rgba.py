"""The 4-wide TF-table intrinsics (rlhf_tf.render.native_rgba) give, bit for
bit, what the scalar code of the native kernels gives."""

import numba
import numpy as np
import pytest

from rlhf_tf.render.native_rgba import bilinear_rgba, scatter_rgba


@numba.njit
def _vector(table, acc, k, k2, wx, wy, w, x):
  rgba = bilinear_rgba(table, k, k2, wx, wy)
  scatter_rgba(acc, k, k2, w[0], w[1], w[2], w[3], x[0], x[1], x[2], x[3])
  return rgba


def _scalar(table, acc, k, k2, wx, wy, w, x):
  rgba = []
  for c in range(4):
    a, b = table[k + c], table[k + c + 4]
    bottom = a + wx * (b - a)
    a, b = table[k2 + c], table[k2 + c + 4]
    rgba.append(bottom + wy * (a + wx * (b - a) - bottom))
    for offset, wc in zip((k, k + 4, k2, k2 + 4), w):
      acc[offset + c] += wc * x[c]
  return tuple(rgba)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_vector_lookup_and_scatter_are_the_scalar_ones(dtype):
  rng = np.random.default_rng(0)
  bins_x = 5
  table = rng.uniform(0, 1, 4 * bins_x * 4).astype(dtype)
  for _ in range(20):
    cell = int(rng.integers(0, 3 * bins_x - 1))
    k, k2 = 4 * cell, 4 * (cell + bins_x)
    wx, wy = (dtype(v) for v in rng.uniform(0, 1, 2))
    w = tuple(dtype(v) for v in rng.uniform(0, 1, 4))
    x = tuple(dtype(v) for v in rng.normal(size=4))
    start = rng.normal(size=table.shape).astype(dtype)
    acc, expected_acc = start.copy(), start.copy()
    got = _vector(table, acc, np.uint64(k), np.uint64(k2), wx, wy, w, x)
    expected = _scalar(table, expected_acc, k, k2, wx, wy, w, x)
    np.testing.assert_array_equal(np.array(got, dtype), np.array(expected))
    np.testing.assert_array_equal(acc, expected_acc)
