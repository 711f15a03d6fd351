"""Tests for rlhf_tf.render.safe_math: values and finite gradients."""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from rlhf_tf.render import safe_math


def test_safe_norm_is_exact_and_has_zero_gradient_at_the_origin():
  norm_grad = jax.jit(jax.grad(safe_math.safe_norm))
  np.testing.assert_array_equal(norm_grad(jnp.zeros(2)), [0.0, 0.0])
  assert float(safe_math.safe_norm(jnp.zeros(2))) == 0.0
  x = jnp.array([3.0, 4.0])
  assert float(safe_math.safe_norm(x)) == pytest.approx(5.0)
  np.testing.assert_allclose(norm_grad(x), [0.6, 0.8])
  np.testing.assert_allclose(
      safe_math.safe_norm(jnp.ones((2, 3)), axis=0), np.sqrt(2.0) * np.ones(3)
  )
  with jax.enable_x64(True):
    check_grads(
        jax.jit(safe_math.safe_norm),
        (jnp.array([0.3, -0.2], jnp.float64),),
        order=2,
        modes=['rev'],
    )


def test_floored_norm_never_goes_below_its_floor():
  norm_grad = jax.jit(jax.grad(safe_math.floored_norm))
  assert float(safe_math.floored_norm(jnp.zeros(3))) == pytest.approx(1e-12)
  np.testing.assert_array_equal(norm_grad(jnp.zeros(3)), np.zeros(3))
  assert float(safe_math.floored_norm(jnp.zeros(3), floor=0.5)) == 0.5
  x = jnp.array([[3.0, 4.0], [0.0, 0.1]])
  np.testing.assert_allclose(safe_math.floored_norm(x, floor=0.2), [5.0, 0.2])
  np.testing.assert_allclose(norm_grad(jnp.array([3.0, 4.0])), [0.6, 0.8])
  with jax.enable_x64(True):
    check_grads(
        jax.jit(safe_math.floored_norm),
        (jnp.array([0.3, -0.2, 0.5], jnp.float64),),
        order=2,
        modes=['fwd', 'rev'],
    )


def test_safe_div_falls_back_with_a_finite_gradient():
  assert float(safe_math.safe_div(1.0, 0.0, fallback=7.0)) == 7.0
  div_grad = jax.jit(jax.grad(lambda d: safe_math.safe_div(1.0, d)))
  assert float(div_grad(0.0)) == 0.0
  np.testing.assert_allclose(div_grad(2.0), -0.25)
