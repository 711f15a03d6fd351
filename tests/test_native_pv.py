"""The 4-wide (P, V) intrinsic (rlhf_tf.render.native_pv) gives, bit for
bit, what scalar numba code of the same formulas gives, in both branches
(a piece with a u span and one without) and both table dtypes."""

import numba
import numpy as np
import pytest

from rlhf_tf.render.native_pv import piece_means


@numba.njit
def _vector(table, k_f, k_b, bins_x, fv, fu_f, fu_b, du, ok):
  return piece_means(table, k_f, k_b, bins_x, fv, fu_f, fu_b, du, ok)


@numba.njit
def _pv(table, k, bins_x, fv, c):
  a = table[k, c]
  return a + fv * (table[k + bins_x, c] - a)


@numba.njit
def _scalar(table, k_f, k_b, bins_x, fv, fu_f, fu_b, du, ok):
  """The scalar formulas piece_forward had before the intrinsic."""
  sig_f = _pv(table, k_f, bins_x, fv, 4)
  sig_b = _pv(table, k_b, bins_x, fv, 4)
  out = np.zeros(6)
  for c in range(4):
    v_f = _pv(table, k_f, bins_x, fv, 4 + c)
    v_b = _pv(table, k_b, bins_x, fv, 4 + c)
    if ok:
      g_f = _pv(table, k_f, bins_x, fv, c) + fu_f * v_f
      g_b = _pv(table, k_b, bins_x, fv, c) + fu_b * v_b
      out[c] = (g_b - g_f) / du if c == 0 else (g_b - g_f) * (1.0 / du)
    else:
      out[c] = 0.5 * (v_f + v_b)
  out[4], out[5] = sig_f, sig_b
  return out


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_piece_means_are_the_scalar_ones(dtype):
  rng = np.random.default_rng(0)
  bins_y, bins_x = 4, 7
  table = rng.normal(size=(bins_y * bins_x, 8)).astype(dtype)
  for trial in range(40):
    k_f, k_b = rng.integers(0, (bins_y - 1) * bins_x, 2)
    fv, fu_f, fu_b = rng.uniform(0, 1, 3)
    du = rng.normal() * (1e-3 if trial % 3 else 3.0)
    ok = bool(trial % 4)
    args = (table, k_f, k_b, bins_x, fv, fu_f, fu_b, du, ok)
    np.testing.assert_array_equal(
        np.array(_vector(*args)), _scalar(*args), err_msg=str(trial)
    )
