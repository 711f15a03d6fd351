"""Pre-integration's split of a half segment at a crest bracketed by its
ends' exact slopes: the extremum of the cubic Hermite, the exact slope of
the trilinear field, and a crest between two samples seen through it."""

from hypothesis import given, HealthCheck
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import preintegration, render_settings, sampling


def _hermite(u_a, u_b, s_a, s_b, tau):
  h00 = 2 * tau**3 - 3 * tau**2 + 1
  h10 = tau**3 - 2 * tau**2 + tau
  h01 = -2 * tau**3 + 3 * tau**2
  h11 = tau**3 - tau**2
  return h00 * u_a + h10 * s_a + h01 * u_b + h11 * s_b


# XLA:CPU flushes subnormals to zero.
_finite = st.floats(-50, 50, allow_nan=False, allow_subnormal=False)


@hyp_settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(u_a=_finite, u_b=_finite, s_a=_finite, s_b=_finite)
def test_extremum_is_the_hermites_stationary_point(u_a, u_b, s_a, s_b):
  with jax.enable_x64(True):
    tau, u = [
        float(v)
        for v in preintegration.extremum(
            *[jnp.float64(v) for v in (u_a, u_b, s_a, s_b)]
        )
    ]
  assert 0.0 <= tau <= 1.0
  if np.sign(s_a) * np.sign(s_b) >= 0:  # Nothing bracketed: not split.
    assert (tau, u) == (1.0, u_b)
    return
  np.testing.assert_allclose(u, _hermite(u_a, u_b, s_a, s_b, tau), atol=1e-9)
  dense = _hermite(u_a, u_b, s_a, s_b, np.linspace(0.0, 1.0, 20001))
  # H' changes sign once on [0, 1]: a crest (s_a > 0) or a trough.
  want = dense.max() if s_a > 0 else dense.min()
  np.testing.assert_allclose(u, want, atol=1e-6 * (1 + abs(want)))


def test_extremum_has_finite_gradients_everywhere():
  f = lambda a: jnp.sum(jnp.stack(preintegration.extremum(*a)))
  for args in (
      (0.0, 0.0, 0.0, 0.0),
      (1.0, 1.0, 2.0, -2.0),  # Quadratic: A = 0.
      (0.0, 3.0, 1.0, -1e-30),
      (2.0, 1.0, -4.0, 3.0),
  ):
    g = jax.grad(f)(jnp.array(args, jnp.float32))
    assert np.all(np.isfinite(np.asarray(g))), (args, g)


def test_trilinear_slope_is_the_exact_directional_derivative():
  rng = np.random.default_rng(2)
  shape = (5, 6, 7)
  packed = jnp.asarray(rng.normal(size=shape + (4,)) * 100, jnp.float32)
  coords = jnp.asarray(
      rng.uniform(0.1, 1.0, (50, 3)) * (np.array(shape) - 1.2), jnp.float32
  )
  tangent = jnp.asarray(rng.normal(size=(50, 3)), jnp.float32)
  flat = packed.reshape(-1, 4)
  out = sampling.trilinear_packed(flat, shape, coords, tangent=tangent)
  _, want = jax.jvp(
      lambda c: sampling.trilinear(flat, shape, c), (coords,), (tangent,)
  )
  np.testing.assert_allclose(out['slope'], want[..., 0], rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(
      out['values'], sampling.trilinear(flat, shape, coords), atol=1e-4
  )


def test_a_crest_between_two_samples_is_seen_through_their_slopes():
  """Front and midpoint both at x = 0.3 (outside the opaque band x >= 1/2),
  the field rising from the front and falling into the midpoint: the
  Hermite crest at the half's middle reaches x = 0.55, so each quarter
  piece is above the edge over (0.55 - 0.5) / (0.55 - 0.3) of its length.
  Without the slopes the half is clear."""
  with jax.enable_x64(True):
    bins, a, seg = 8, 0.6, 1.0
    table = (
        jnp.zeros((bins, bins, 4), jnp.float64)
        .at[..., bins // 2 :, :]
        .set(jnp.array([0.9, 0.5, 0.2, a]))
    )
    pairs = preintegration.row_pairs(preintegration.segment_table(table, 1.0))
    # Hermite with s_a = -s_b = s: crest s / 4 above the ends at tau = 1/2;
    # s = dx/dt * (seg / 2) = 1.0 gives x = 0.3 + 0.25 = 0.55.
    samples = dict(
        x=jnp.array([[0.3, 0.3]]),
        y=jnp.array([[0.3, 0.3]]),
        x_mid=jnp.array([[0.3, 0.0]]),
        y_mid=jnp.array([[0.3, 0.0]]),
        seg=jnp.array([[seg, 0.0]]),
        slope=jnp.array([[2.0, -2.0]]),
        slope_mid=jnp.array([[-2.0, 0.0]]),
    )
    settings = render_settings.RenderSettings(
        shading=False, preintegrate=True, reference_step_mm=1.0
    )
    e, log_t = preintegration.classify(pairs, samples, settings, bins, bins)
    above = 2 * (0.5 * 0.5 * seg) * (0.05 / 0.25)  # mm above the edge.
    alpha = 1.0 - (1.0 - a) ** above
    np.testing.assert_allclose(-np.expm1(log_t), [[alpha]], rtol=1e-9)
    np.testing.assert_allclose(e[0, 0], alpha * np.array([0.9, 0.5, 0.2]))
    flat = dict(samples, slope=0 * samples['slope'])
    flat['slope_mid'] = 0 * samples['slope_mid']
    _, log_t = preintegration.classify(pairs, flat, settings, bins, bins)
    np.testing.assert_allclose(log_t, 0.0, atol=1e-15)
