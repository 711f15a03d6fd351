"""Tests for rlhf_tf.render.transfer_function (2D TF tables from polygons)."""

import functools

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
from matplotlib.path import Path
import numpy as np
import pytest

from rlhf_tf.render import polygon as polygon_lib
from rlhf_tf.render import transfer_function as tf_lib

BINS = 16
SQUARE = np.array([[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]])
L_SHAPE = np.array(
    [[0.1, 0.1], [0.9, 0.1], [0.9, 0.4], [0.4, 0.4], [0.4, 0.9], [0.1, 0.9]]
)
COVER = np.array([[-1.0, -1.0], [2.0, -1.0], [2.0, 2.0], [-1.0, 2.0]])


def test_bin_centres_follow_histogram_convention():
  c = np.asarray(tf_lib.bin_centres(4))
  assert c.shape == (4, 4, 2)
  # [row = y bin, column = x bin]; (x, y) pairs; centres (i + 0.5) / bins.
  np.testing.assert_allclose(c[1, 3], [3.5 / 4, 1.5 / 4])
  np.testing.assert_allclose(c[:, 0, 1], (np.arange(4) + 0.5) / 4)
  np.testing.assert_allclose(c[0, :, 0], (np.arange(4) + 0.5) / 4)


def test_opacity_orientation_rows_are_y():
  # A band in low intensity x < 0.25, all gradients: opaque columns 0..3.
  band = np.array([[0.0, -1.0], [0.25, -1.0], [0.25, 2.0], [0.0, 2.0]])
  a = np.asarray(tf_lib.opacity_table(band, BINS, hard=True))
  assert a[:, :4].min() == 1.0 and a[:, 4:].max() == 0.0


@pytest.mark.parametrize('tau, alpha_max', [(0.01, 1.0), (0.5, 0.7)])
def test_covering_polygon_closed_form(tau, alpha_max):
  a = tf_lib.opacity_table(COVER, BINS, tau=tau, alpha_max=alpha_max)
  c = (np.arange(BINS) + 0.5) / BINS
  x, y = np.meshgrid(c, c)
  d = np.minimum.reduce([x + 1.0, 2.0 - x, y + 1.0, 2.0 - y])
  want = alpha_max / (1.0 + np.exp(-d / tau))
  assert a.shape == (BINS, BINS)
  np.testing.assert_allclose(a, want, rtol=1e-6)
  if tau == 0.01:
    np.testing.assert_allclose(a, alpha_max)  # Constant ~ alpha_max.


def test_square_soft_opacity_closed_form():
  tau = 0.05
  a = np.asarray(tf_lib.opacity_table(SQUARE, BINS, tau=tau))
  c = (np.arange(BINS) + 0.5) / BINS
  # Row 8 (y = 0.53125), columns inside: d = min(x - 0.2, 0.8 - x, ...).
  x, y = c, c[8]
  d_in = np.minimum.reduce(
      [x - 0.2, 0.8 - x, np.full_like(x, y - 0.2), np.full_like(x, 0.8 - y)]
  )
  d_out = -np.maximum(0.2 - x, x - 0.8)  # Outside left/right at this row.
  d = np.where((x > 0.2) & (x < 0.8), d_in, d_out)
  np.testing.assert_allclose(a[8], 1.0 / (1.0 + np.exp(-d / tau)), rtol=2e-5)


def test_hard_mode_is_point_in_polygon():
  for v in (
      SQUARE,
      L_SHAPE,
      np.asarray(polygon_lib.random_actions(jax.random.key(4), 1)[0]),
  ):
    a = np.asarray(tf_lib.opacity_table(v, 32, alpha_max=0.6, hard=True))
    centres = np.asarray(tf_lib.bin_centres(32)).reshape(-1, 2)
    inside = Path(v).contains_points(centres).reshape(32, 32)
    np.testing.assert_allclose(a, np.where(inside, 0.6, 0.0), rtol=1e-7)
    assert set(np.unique(a)) <= {np.float32(0.0), np.float32(0.6)}
    # The soft table at small tau agrees away from the edge.
    soft = np.asarray(tf_lib.opacity_table(v, 32, tau=1e-3, alpha_max=0.6))
    sd = np.asarray(polygon_lib.signed_distance(tf_lib.bin_centres(32), v))
    far = np.abs(sd) > 0.02
    np.testing.assert_allclose(soft[far], a[far], atol=1e-6)


def test_validation():
  with pytest.raises(ValueError, match='tau'):
    tf_lib.opacity_table(SQUARE, BINS, tau=0.0)
  with pytest.raises(ValueError, match='alpha_max'):
    tf_lib.opacity_table(SQUARE, BINS, alpha_max=1.5)
  with pytest.raises(ValueError, match='alpha_max'):
    tf_lib.opacity_table(SQUARE, BINS, alpha_max=0.0)
  with pytest.raises(ValueError, match='bins'):
    tf_lib.opacity_table(SQUARE, 1)
  with pytest.raises(ValueError, match='bins'):
    tf_lib.tf_table(SQUARE, 2.5)
  with pytest.raises(ValueError, match='colormap'):
    tf_lib.intensity_colormap('no-such-map', 8)
  with pytest.raises(ValueError, match='polygons'):
    tf_lib.tf_table(np.zeros((4, 3)), BINS)


def test_opacity_check_grads_float64():
  with jax.enable_x64(True):
    v = jnp.asarray(SQUARE + 0.013 * np.cos(np.arange(8)).reshape(4, 2))
    f = jax.jit(
        functools.partial(
            tf_lib.opacity_table, bins=BINS, tau=0.05, alpha_max=0.8
        )
    )
    assert f(v).dtype == jnp.float64
    check_grads(f, (v,), order=1, modes=['rev'], eps=1e-6)
    # tau enters the table too (e.g. learned or annealed edge width).
    g = jax.jit(lambda t: tf_lib.opacity_table(v, BINS, tau=t))
    check_grads(g, (jnp.float64(0.05),), order=1, modes=['rev'], eps=1e-7)


def test_finite_gradients_sharp_tau_and_degenerate_edges():
  loss = lambda v, tau: jnp.sum(tf_lib.tf_table(v, BINS, tau=tau) ** 2)
  grad = jax.jit(jax.grad(loss))  # tau traced: one compile per shape.
  sharp = grad(jnp.asarray(SQUARE, jnp.float32), 1e-4)
  assert np.isfinite(np.asarray(sharp)).all()
  degenerate = jnp.array([[0.2, 0.2], [0.2, 0.2], [0.8, 0.2], [0.5, 0.8]])
  for tau in (1e-4, 0.01):
    assert np.isfinite(np.asarray(grad(degenerate, tau))).all()
  # Vertices exactly on bin centres, and a polygon collapsed to a point.
  on_centre = (
      jnp.array([[1.5, 1.5], [12.5, 1.5], [12.5, 9.5], [5.5, 9.5]]) / BINS
  )
  collapsed = jnp.full((4, 2), 8.5 / BINS)
  for v in (on_centre, collapsed):
    g = grad(v, 0.01)
    assert np.isfinite(np.asarray(g)).all()
  # The gradient is not trivially zero: opacity grows with the polygon.
  g = grad(jnp.asarray(SQUARE, jnp.float32), 0.05)
  assert float(jnp.abs(g).sum()) > 0


def test_intensity_colormap():
  bone = tf_lib.intensity_colormap('bone', 64)
  assert bone.shape == (64, 3) and bone.dtype == np.float32
  assert bone.min() >= 0.0 and bone.max() <= 1.0
  assert bone[0, 0] > bone[0, 2] and bone[0].sum() < 0.6  # Dark red-brown.
  assert bone[-1].min() > 0.95  # Near white.
  luminance = bone @ np.array([0.2126, 0.7152, 0.0722])
  assert np.all(np.diff(luminance) > 0)
  assert tf_lib.intensity_colormap('bone', 64) is bone  # Computed once.
  with pytest.raises(ValueError):
    bone[0, 0] = 1.0  # Read-only constant.
  gray = tf_lib.intensity_colormap('gray', 4)
  np.testing.assert_allclose(gray[:, 0], (np.arange(4) + 0.5) / 4)
  viridis = tf_lib.intensity_colormap('viridis', 8)
  assert viridis.shape == (8, 3)


def test_tf_table_colormap_single_polygon():
  rgba = tf_lib.tf_table(SQUARE, BINS, tau=0.02, alpha_max=0.9)
  assert rgba.shape == (BINS, BINS, 4)
  cmap = tf_lib.intensity_colormap('bone', BINS)
  np.testing.assert_allclose(
      rgba[..., :3], np.broadcast_to(cmap[None], (BINS, BINS, 3)), atol=1e-6
  )
  np.testing.assert_allclose(
      rgba[..., 3], tf_lib.opacity_table(SQUARE, BINS, 0.02, 0.9), atol=1e-7
  )


def test_tf_table_two_disjoint_polygons():
  left = np.array([[0.05, 0.05], [0.4, 0.05], [0.4, 0.95], [0.05, 0.95]])
  right = np.array([[0.6, 0.3], [0.95, 0.3], [0.8, 0.7]])
  colors = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  polys = np.stack([left, np.concatenate([right, right[-1:]])])  # n = 4 each.
  for hard in (False, True):
    rgba = np.asarray(
        tf_lib.tf_table(
            polys, 32, tau=0.002, alpha_max=0.8, colors=colors, hard=hard
        )
    )
    centres = np.asarray(tf_lib.bin_centres(32)).reshape(-1, 2)
    sd = [
        np.asarray(polygon_lib.signed_distance(centres, p)).reshape(32, 32)
        for p in (left, right)
    ]
    in_left, in_right = sd[0] > 0.03, sd[1] > 0.03
    out = (sd[0] < -0.03) & (sd[1] < -0.03)
    assert in_left.sum() > 20 and in_right.sum() > 5 and out.sum() > 100
    np.testing.assert_allclose(
        rgba[in_left, :3] - [1.0, 0.0, 0.0], 0.0, atol=1e-4
    )
    np.testing.assert_allclose(
        rgba[in_right, :3] - [0.0, 0.0, 1.0], 0.0, atol=1e-4
    )
    np.testing.assert_allclose(rgba[in_left | in_right, 3], 0.8, atol=1e-4)
    np.testing.assert_allclose(rgba[out, 3], 0.0, atol=1e-4)


def test_tf_table_overlapping_polygons_combine():
  # Two covering polygons: alpha = 1 - (1 - a)^2, colour = the plain mean.
  polys = np.stack([COVER, COVER + 0.01])
  colors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  rgba = np.asarray(
      tf_lib.tf_table(polys, 8, tau=0.01, alpha_max=0.5, colors=colors)
  )
  np.testing.assert_allclose(rgba[..., 3], 0.75, atol=1e-6)
  np.testing.assert_allclose(
      rgba[..., :3], np.broadcast_to([0.5, 0.5, 0.0], (8, 8, 3)), atol=1e-4
  )


def test_tf_table_vmap_equals_loop():
  actions = polygon_lib.random_actions(jax.random.key(7), 8)
  make = jax.jit(lambda v: tf_lib.tf_table(v, BINS, tau=0.02, alpha_max=0.9))
  batched = jax.vmap(make)(actions)
  assert batched.shape == (8, BINS, BINS, 4)
  looped = np.stack([np.asarray(make(a)) for a in actions])
  np.testing.assert_allclose(batched, looped, atol=1e-6)
  # Batch-agnostic input: [B, P=1, n, 2] without vmap gives the same.
  direct = tf_lib.tf_table(actions[:, None], BINS, tau=0.02, alpha_max=0.9)
  np.testing.assert_allclose(direct, looped, atol=1e-6)
  # Per-TF constant colours broadcast over a [2, 4, P=1, n, 2] batch.
  colors = jax.random.uniform(jax.random.key(8), (2, 4, 1, 3))
  coloured = tf_lib.tf_table(
      actions.reshape(2, 4, 1, 4, 2), BINS, tau=0.02, colors=colors
  )
  assert coloured.shape == (2, 4, BINS, BINS, 4)
  np.testing.assert_allclose(
      coloured[1, 2, ..., :3],
      np.broadcast_to(colors[1, 2, 0], (BINS, BINS, 3)),
      atol=1e-5,
  )
