"""A pre-integrated segment's ends read from a ray cache's pool: into
registers (``end``, ``shade``: the cached forward and the segment boxes)
or into a scratch array ends [3, 5] (``load_ends``, ``load_shading``: the
adjoint and the clear-block weights), and a group's columns of the pool
fields (``columns``).

The pool (``cache_sampling``, ``native_cache_build``) holds per ray and
sample row the table coordinates u, v and their slope du / dt (bins / mm)
at each segment end and midpoint, and the headlight terms d, s (uint16,
in units of 1 / 65535) where shading is on. Every reader rounds u, v, du
to the table's dtype first, then computes in float64, so the forward, the
adjoint and the clear-block weights see the same ends.
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render.native_inline import HELPER

_Q = 1.0 / 65535.0


@numba.njit(**HELPER)
def end(u, v, du, row, m, dtype):
  """(u, v, du) of pool row, column m, rounded to dtype, as float64."""
  return (
      np.float64(dtype(u[row, m])),
      np.float64(dtype(v[row, m])),
      np.float64(dtype(du[row, m])),
  )


@numba.njit(**HELPER)
def shade(d, s, row, m):
  """The dequantised headlight terms (d, s) of pool row, column m."""
  return d[row, m] * _Q, s[row, m] * _Q


@numba.njit(**HELPER)
def load_ends(u, v, du, um, vm, dum, row, m, dtype, ends):
  """Fills ends [3, 5]' u, v, du columns (front, midpoint, back; d, s:
  load_shading) from the pool fields u, v, du, u_mid, v_mid, du_mid of row
  (front and midpoint) and row + 1 (back), in the table's dtype."""
  ends[0, 0] = dtype(u[row, m])
  ends[0, 1] = dtype(v[row, m])
  ends[0, 2] = dtype(du[row, m])
  ends[1, 0] = dtype(um[row, m])
  ends[1, 1] = dtype(vm[row, m])
  ends[1, 2] = dtype(dum[row, m])
  ends[2, 0] = dtype(u[row + 1, m])
  ends[2, 1] = dtype(v[row + 1, m])
  ends[2, 2] = dtype(du[row + 1, m])


@numba.njit(**HELPER)
def load_shading(d, s, dm, sm, row, m, ends):
  """Fills ends' d, s columns with the dequantised headlight terms."""
  ends[0, 3], ends[0, 4] = d[row, m] * _Q, s[row, m] * _Q
  ends[1, 3], ends[1, 4] = dm[row, m] * _Q, sm[row, m] * _Q
  ends[2, 3], ends[2, 4] = d[row + 1, m] * _Q, s[row + 1, m] * _Q


@numba.njit(**HELPER)
def columns(fields, g0, g1):
  """The pool fields' columns g0:g1 (a group's rays)."""
  u, v, du, um, vm, dum, d, s, dm, sm = fields
  return (
      u[:, g0:g1],
      v[:, g0:g1],
      du[:, g0:g1],
      um[:, g0:g1],
      vm[:, g0:g1],
      dum[:, g0:g1],
      d[:, g0:g1],
      s[:, g0:g1],
      dm[:, g0:g1],
      sm[:, g0:g1],
  )
