"""Shading from the gradient's structure tensor (settings.tensor_normals):
the terms against a hand computation over the 8 voxels, against the mean
gradient's where the gradient is constant, on the crest of a thin plate,
and finite gradients at zero."""

from hypothesis import given, HealthCheck
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import compositing, sampling

SHAPE = (4, 5, 6)


def _tensor(packed_flat, shape, coords, view):
  """(values, q, trace) of sampling.trilinear_packed seen along view."""
  out = sampling.trilinear_packed(packed_flat, shape, coords, view)
  return out['values'], out['q'], out['trace']


def _unit(v):
  v = np.asarray(v, np.float64)
  return v / np.linalg.norm(v)


def test_tensor_is_the_weighted_sum_over_the_eight_voxels():
  rng = np.random.default_rng(0)
  packed = rng.normal(size=SHAPE + (4,)) * 50
  coords = np.array([[1.3, 2.6, 4.2], [0.0, 0.5, 5.0], [2.9, 3.99, 0.01]])
  view = _unit([0.2, -0.7, 0.4])
  val, q, trace = _tensor(
      jnp.asarray(packed.reshape(-1, 4)), SHAPE, jnp.asarray(coords), view
  )
  np.testing.assert_allclose(
      val,
      sampling.trilinear(jnp.asarray(packed.reshape(-1, 4)), SHAPE, coords),
      rtol=1e-6,
  )
  for p, qp, tp in zip(coords, np.asarray(q), np.asarray(trace)):
    i0 = np.minimum(np.floor(p).astype(int), np.array(SHAPE) - 2)
    f = p - i0
    want_q = want_t = 0.0
    for corner in np.ndindex(2, 2, 2):
      w = np.prod([f[a] if corner[a] else 1 - f[a] for a in range(3)])
      g = packed[tuple(i0 + np.array(corner))][1:]
      want_q += w * np.dot(g, view) ** 2
      want_t += w * np.dot(g, g)
    np.testing.assert_allclose([qp, tp], [want_q, want_t], rtol=1e-5)


@hyp_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    g=st.lists(st.floats(-300, 300), min_size=3, max_size=3),
    view=st.lists(st.floats(-1, 1), min_size=3, max_size=3),
    point=st.lists(st.floats(0, 1), min_size=3, max_size=3),
)
def test_a_constant_gradient_gives_the_mean_gradient_terms(g, view, point):
  """g the same in every voxel: sqrt(l^T J l) / |g| = |n . l| whatever the
  magnitude (below normal_eps both shrink the same way)."""
  if np.linalg.norm(view) < 1e-3:
    view = [0.0, 0.0, 1.0]
  view = jnp.asarray(_unit(view), jnp.float32)
  packed = np.zeros(SHAPE + (4,), np.float32)
  packed[..., 1:] = g
  coords = jnp.asarray(np.array(point) * (np.array(SHAPE) - 1), jnp.float32)
  _, q, trace = _tensor(jnp.asarray(packed.reshape(-1, 4)), SHAPE, coords, view)
  d, s = compositing.tensor_headlight_terms(q, trace, 16.0, 4.0)
  d_ref, s_ref = compositing.headlight_terms(jnp.asarray(g), view, 16.0, 4.0)
  np.testing.assert_allclose(d, d_ref, atol=2e-5)
  np.testing.assert_allclose(s, s_ref, atol=2e-5)
  assert 0.0 <= float(d) <= 1.0


def test_the_crest_of_a_thin_plate_keeps_the_plates_shading():
  """A plate about one voxel thick (normal z, crest between voxels 3 and 4,
  whose central differences are +-270 HU/voxel) with a slow ramp along y
  (5 HU/voxel), seen at |n . l| = 0.3: on the crest the mean gradient
  cancels to the ramp, which lies along the view, and its headlight term
  jumps to ~0.95; the tensor's stays the plate's."""
  z = np.arange(8.0)[:, None, None]
  y = np.arange(7.0)[None, :, None]
  hu = 800 * np.exp(-((z - 3.5) ** 2)) + 5 * y + 0 * np.arange(7.0)
  hu = jnp.asarray(hu, jnp.float32)
  packed = sampling.pack_volume(hu, jnp.stack(jnp.gradient(hu), -1))
  view = jnp.asarray(_unit([0.3, np.sqrt(1 - 0.09), 0.0]), jnp.float32)
  crest = jnp.asarray([[3.5, 3.0, 3.0], [3.5, 2.5, 3.7]], jnp.float32)
  val, q, trace = _tensor(packed.reshape(-1, 4), hu.shape, crest, view)
  d_tensor, _ = compositing.tensor_headlight_terms(q, trace, 16.0, 1.0)
  d_mean, _ = compositing.headlight_terms(val[..., 1:], view, 16.0, 1.0)
  np.testing.assert_allclose(d_mean, 0.954, atol=0.01)
  np.testing.assert_allclose(d_tensor, 0.3, atol=0.01)


def test_tensor_terms_have_finite_gradients_at_zero():
  def f(q, t):
    d, s = compositing.tensor_headlight_terms(q, t, 16.0, 1e-3)
    return jnp.sum(d + s)

  for q, t in ((0.0, 0.0), (0.0, 1.0), (1e-30, 1e-30), (2.0, 1.0)):
    grads = jax.grad(f, argnums=(0, 1))(jnp.float32(q), jnp.float32(t))
    assert all(np.isfinite(np.asarray(g)) for g in grads), (q, t, grads)
