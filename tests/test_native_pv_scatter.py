"""The 4-wide (P, V) scatter-add (rlhf_tf.render.native_pv_scatter) adds,
bit for bit, what scalar numba code adds, in both table dtypes."""

import numba
import numpy as np
import pytest

from rlhf_tf.render.native_pv_scatter import scatter_pv


@numba.njit
def _vector(acc, k, bins_x, w_lo, w_hi, g_p, g_v):
  scatter_pv(acc, k, bins_x, w_lo, w_hi, g_p, g_v)


@numba.njit
def _scalar(acc, k, bins_x, w_lo, w_hi, g_p, g_v):
  """piece_adjoint's scalar adds before the intrinsic."""
  for c in range(4):
    acc[k, c] += w_lo * g_p[c]
    acc[k + bins_x, c] += w_hi * g_p[c]
    acc[k, 4 + c] += w_lo * g_v[c]
    acc[k + bins_x, 4 + c] += w_hi * g_v[c]


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_scatter_pv_adds_the_scalar_sums(dtype):
  rng = np.random.default_rng(0)
  bins_y, bins_x = 4, 7
  start = rng.normal(size=(bins_y * bins_x, 8)).astype(dtype)
  vector, scalar = start.copy(), start.copy()
  for _ in range(40):
    k = int(rng.integers(0, (bins_y - 1) * bins_x))
    w_hi = float(rng.uniform())
    g_p = tuple(
        float(x) for x in rng.normal(size=4) * 10.0 ** rng.integers(-8, 3)
    )
    g_v = tuple(float(x) for x in rng.normal(size=4))
    _vector(vector, k, bins_x, 1.0 - w_hi, w_hi, g_p, g_v)
    _scalar(scalar, k, bins_x, 1.0 - w_hi, w_hi, np.array(g_p), np.array(g_v))
  assert not np.array_equal(vector, start)
  np.testing.assert_array_equal(vector, scalar)
