"""config.mesh -> jax.sharding.Mesh, padding and host transfer."""

import jax
import ml_collections
import numpy as np
import pytest

from rlhf_tf.devices import mesh as mesh_lib


def _cfg(shape, axes=('data',)):
  return ml_collections.ConfigDict(dict(shape=shape, axes=axes))


def test_default_mesh_puts_every_device_on_data():
  mesh = mesh_lib.make_mesh()
  assert dict(mesh.shape) == {'data': jax.device_count()}


def test_mesh_shapes_resolve_minus_one_and_reject_bad_ones():
  assert dict(mesh_lib.make_mesh(_cfg((2, -1), ('data', 'model'))).shape) == {
      'data': 2,
      'model': 4,
  }
  assert mesh_lib.make_mesh(_cfg((2,))).devices.size == 2
  for bad in ((3, -1), (-1, -1), (16,), (0,)):
    with pytest.raises(ValueError, match='config.mesh.shape'):
      mesh_lib.make_mesh(_cfg(bad, ('data', 'model')[: len(bad)]))
  with pytest.raises(ValueError, match="must include 'data'"):
    mesh_lib.make_mesh(_cfg((-1,), ('batch',)))


def test_pad_leading_repeats_the_last_row_and_to_host_gathers():
  x = np.arange(10, dtype=np.float32).reshape(5, 2)
  padded = mesh_lib.pad_leading(x, 8)
  assert padded.shape == (8, 2)
  np.testing.assert_array_equal(padded[5:], np.repeat(x[-1:], 3, axis=0))
  mesh = mesh_lib.local_mesh(8)
  sharded = jax.device_put(padded, mesh_lib.data_sharded(mesh))
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_array_equal(mesh_lib.to_host(sharded), padded)
