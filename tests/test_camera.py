"""Tests for rlhf_tf.render.camera (world frame, head convention, rays)."""

import jax.numpy as jnp
import numpy as np
import pytest

from rlhf_tf.render import camera as camera_lib

SHAPE, SPACING = (10, 12, 14), (2.0, 1.0, 0.5)


def test_cross_is_right_handed_in_zyx_components():
  x, y, z = (0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)
  np.testing.assert_allclose(camera_lib.cross(jnp.array(x), jnp.array(y)), z)
  np.testing.assert_allclose(camera_lib.cross(jnp.array(y), jnp.array(z)), x)


def test_volume_box_centres_voxels_at_index_times_spacing():
  lo, hi = camera_lib.volume_box(SHAPE, SPACING)
  np.testing.assert_allclose(lo, [-1.0, -0.5, -0.25])
  np.testing.assert_allclose(hi - lo, np.multiply(SHAPE, SPACING))


@pytest.mark.parametrize('projection', ['orthographic', 'perspective'])
def test_rays_are_unit_and_shaped(projection):
  cam = camera_lib.orbit_camera(
      SHAPE, SPACING, 20.0, 30.0, width=5, height=3, projection=projection
  )
  o, d = camera_lib.generate_rays(cam)
  assert o.shape == d.shape == (3, 5, 3)
  np.testing.assert_allclose(jnp.linalg.norm(d, axis=-1), 1.0, atol=1e-6)
  lo, hi = camera_lib.volume_box(SHAPE, SPACING)
  centre = 0.5 * (lo + hi)
  # The central pixel's ray passes through the look-at point (odd sizes).
  oc, dc = np.asarray(o[1, 2]), np.asarray(d[1, 2])
  off = (centre - oc) - np.dot(centre - oc, dc) * dc
  assert np.linalg.norm(off) < 1e-4
  if projection == 'orthographic':
    np.testing.assert_allclose(d, jnp.broadcast_to(d[0, 0], d.shape), atol=1e-6)
  else:
    np.testing.assert_allclose(o, jnp.broadcast_to(cam.eye, o.shape))


def test_head_camera_faces_the_patient():
  cam = camera_lib.head_camera(SHAPE, SPACING, width=4, height=4)
  o, d = camera_lib.generate_rays(cam)
  # Looking posterior (+y), from the anterior side.
  np.testing.assert_allclose(d[0, 0], [0.0, 1.0, 0.0], atol=1e-6)
  # Row 0 is superior (+z); the image's right is the patient's left (+x).
  assert float(o[0, 0, 0] - o[-1, 0, 0]) > 0
  assert float(o[0, -1, 2] - o[0, 0, 2]) > 0
  assert abs(float(o[0, -1, 0] - o[0, 0, 0])) < 1e-5


def test_orbit_azimuth_and_elevation():
  lo, hi = camera_lib.volume_box(SHAPE, SPACING)
  centre = 0.5 * (lo + hi)
  left = camera_lib.orbit_camera(SHAPE, SPACING, azimuth_deg=90.0)
  to_eye = np.asarray(left.eye) - centre
  assert to_eye[2] > 0 and abs(to_eye[0]) < 1e-4 and abs(to_eye[1]) < 1e-4
  top = camera_lib.orbit_camera(SHAPE, SPACING, elevation_deg=90.0)
  f, r, u = (np.asarray(v) for v in top.basis())
  assert np.all(np.isfinite(np.stack([f, r, u])))
  np.testing.assert_allclose(f, [-1.0, 0.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(
      [np.dot(f, r), np.dot(f, u), np.dot(r, u)], 0.0, atol=1e-6
  )


def test_default_orthographic_view_frames_the_box():
  cam = camera_lib.orbit_camera(SHAPE, SPACING, 37.0, 21.0, width=6, height=4)
  diameter = np.linalg.norm(np.multiply(SHAPE, SPACING))
  assert float(cam.ortho_width_mm) * 4 / 6 >= diameter - 1e-6


def test_invalid_projection_raises():
  with pytest.raises(ValueError, match='projection'):
    camera_lib.make_camera((0, 0, -10), (0, 0, 0), projection='fisheye')
