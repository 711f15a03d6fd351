"""Norms and quotients with finite values and gradients everywhere.

The one home of the delicate vector numerics the renderer and the polygon
math share (the opacity / shading helpers ``safe_log1m``, ``safe_normalize``
and ``safe_pow`` stay with compositing, their only user). Two norms, two
meanings:

- ``safe_norm``: the exact Euclidean norm, 0 at the origin with gradient 0
  there (polygon distances: a point on an edge is at distance 0).
- ``floored_norm``: max(|v|, floor), never below ``floor`` (gradient
  magnitudes of a CT volume, where flat regions have |v| = 0).

Gradients are tested in ``tests/test_safe_math.py``.
"""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp


def safe_norm(x, axis: int = -1):
  """Euclidean norm along ``axis`` whose gradient is finite (zero) at x = 0.

  d|x|/dx = x / |x| is 0/0 at the origin; the double-where keeps the NaN out
  of both the value and the gradient. Away from 0 it is the exact norm.

  Args:
    x: [..., d, ...] array.
    axis: the reduced axis.

  Returns:
    [...] the norm (same units as x).
  """
  sq = jnp.sum(x * x, axis=axis)
  nonzero = sq > 0
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def safe_div(num, den, fallback=0.0, min_den: Optional[float] = None):
  """num / den where |den| > min_den, else ``fallback``; finite gradients.

  Args:
    num, den: broadcastable arrays.
    fallback: value (broadcastable) used where the denominator is too small.
    min_den: threshold on |den|; default eps(dtype)^2, small enough to be
      exact for any JH-scale geometry, large enough that 1 / den^2 in the
      gradient cannot overflow.

  Returns:
    the broadcast quotient.
  """
  den = jnp.asarray(den)
  if min_den is None:
    min_den = float(jnp.finfo(jnp.result_type(den, float)).eps) ** 2
  ok = jnp.abs(den) > min_den
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), fallback)


def floored_norm(v, floor=1e-12):
  """max(|v|, floor) over the last axis; gradient 0 (finite) where |v| < floor.

  Args:
    v: [..., d] array.
    floor: the smallest value returned (same units as v).

  Returns:
    [...] the norm, at least ``floor``.
  """
  return jnp.sqrt(jnp.maximum(jnp.sum(v * v, axis=-1), floor * floor))
