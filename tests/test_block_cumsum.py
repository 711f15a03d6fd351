"""block_cumsum.cumsum: jnp.cumsum's float32 result bit for bit on CPU (XLA's
CPU backend sums in blocks of 16, then the blocks' totals), so the (P, V)
table preintegration.segment_table builds with it is unchanged; gradients
equal up to float32 rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhf_tf.render import block_cumsum, compositing, preintegration

CPU = pytest.mark.skipif(
    jax.default_backend() != 'cpu', reason="XLA CPU's order of additions"
)


def _data(shape, seed):
  """float32 of mixed magnitudes with exact zeros (as a TF's V)."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal(shape) * rng.random(shape) ** 3
  x[rng.random(shape) < 0.3] = 0.0
  return x.astype(np.float32)


@CPU
@pytest.mark.parametrize('n', [1, 2, 15, 16, 17, 33, 100, 255, 256, 300])
@pytest.mark.parametrize('axis', [-2, 0])
def test_bits_of_jnp_cumsum(n, axis):
  shape = (n, 4) if axis == 0 else (3, n, 4)
  x = _data(shape, n)
  want = jax.jit(lambda x: jnp.cumsum(x, axis))(x)
  got = jax.jit(lambda x: block_cumsum.cumsum(x, axis))(x)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@CPU
def test_segment_table_unchanged():
  """The table of a 256 x 256 TF is the one jnp.cumsum gave, bit for bit."""
  rng = np.random.default_rng(0)
  tf = rng.random((256, 256, 4)).astype(np.float32)
  tf[..., 3] *= rng.random((256, 256)) < 0.5  # Transparent bins too.

  def with_jnp_cumsum(tf_table, ref):  # segment_table before block_cumsum.
    sigma = -compositing.safe_log1m(tf_table[..., 3]) / ref
    v = jnp.concatenate(
        [sigma[..., None], sigma[..., None] * tf_table[..., :3]], -1
    )
    p = jnp.cumsum(v[..., :-1, :], axis=-2)
    return jnp.concatenate([jnp.pad(p, [(0, 0), (1, 0), (0, 0)]), v], -1)

  want = jax.jit(lambda t: with_jnp_cumsum(t, 0.7))(tf)
  got = jax.jit(lambda t: preintegration.segment_table(t, 0.7))(tf)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_gradient_of_jnp_cumsum():
  x = jnp.asarray(_data((2, 255, 4), 1))
  w = jnp.asarray(_data((2, 255, 4), 2))
  want = jax.grad(lambda x: jnp.sum(w * jnp.cumsum(x, -2)))(x)
  got = jax.grad(lambda x: jnp.sum(w * block_cumsum.cumsum(x, -2)))(x)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
