"""Kernels' read-only inputs: one numba variant for numpy and jax arrays."""

import jax.numpy as jnp
import numba
import numpy as np

from rlhf_tf.render import native_block_boxes
from rlhf_tf.render.native_args import read_only


def test_a_view_not_a_copy_of_the_same_type_whatever_backs_it():
  a = np.arange(12, dtype=np.float32).reshape(3, 4)
  view = read_only(a)
  assert np.shares_memory(view, a) and not view.flags.writeable
  assert a.flags.writeable  # The caller's own array stays writable.
  from_jax = read_only(jnp.asarray(a))
  np.testing.assert_array_equal(from_jax, a)
  assert numba.typeof(view) == numba.typeof(from_jax)
  assert numba.typeof(read_only(a, np.float64)).dtype == numba.float64


def test_numpy_and_jax_fields_compile_one_block_box_kernel():
  rng = np.random.default_rng(0)
  rows, tile = 2 * native_block_boxes.BLOCK, 4
  fields = [rng.uniform(0, 7, (rows, tile)).astype(np.float32)] * 6
  args = (np.array([0]), np.array([rows - 1]), 1.0, (8, 8))
  before = len(native_block_boxes._block_boxes.signatures)
  got = native_block_boxes.block_boxes(fields, *args)
  again = native_block_boxes.block_boxes(
      [jnp.asarray(f) for f in fields], *args
  )
  np.testing.assert_array_equal(got, again)
  assert len(native_block_boxes._block_boxes.signatures) - before <= 1
