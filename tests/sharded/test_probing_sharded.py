"""The 20,000-action evaluation and the corner maps split over devices equal
the 1-device result (tolerance: float32 rounding of batched matmuls)."""

import jax
import numpy as np
import pytest

from rlhf_tf.evaluation import probing
from tests.reward_testing import tiny_model

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope='module')
def tiny():
  return tiny_model()


@pytest.mark.parametrize('num,chunk', [(20000, None), (1003, 64)])
def test_random_action_rewards_sharded_equal_one_device(tiny, mesh, num, chunk):
  model, params, jh = tiny
  key = jax.random.key(3)
  a1, r1 = probing.random_action_rewards(
      model, params, jh, key, num=num, chunk=chunk
  )
  a8, r8 = probing.random_action_rewards(
      model, params, jh, key, num=num, chunk=chunk, mesh=mesh
  )
  assert r8.shape == (num,)
  assert r8.sharding.is_fully_replicated
  assert len(r8.sharding.device_set) == mesh.devices.size
  np.testing.assert_array_equal(np.asarray(a8), np.asarray(a1))
  np.testing.assert_allclose(
      np.asarray(r8), np.asarray(r1), rtol=RTOL, atol=ATOL
  )
  assert np.std(np.asarray(r1)) > 0  # a real spread of rewards compared


def test_corner_maps_sharded_equal_one_device(tiny, mesh):
  model, params, jh = tiny
  base = np.array(
      [[0.2, 0.1], [0.7, 0.15], [0.75, 0.6], [0.25, 0.5]], np.float32
  )
  m1 = probing.corner_maps(model, params, jh, base, grid=21, chunk=100)
  m8 = probing.corner_maps(
      model, params, jh, base, grid=21, chunk=100, mesh=mesh
  )
  assert m8.shape == (4, 21, 21)
  np.testing.assert_allclose(
      np.asarray(m8), np.asarray(m1), rtol=RTOL, atol=ATOL
  )
