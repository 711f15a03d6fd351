"""Pinhole and orthographic cameras in the volume's world frame.

WORLD FRAME (used by the raymarcher and the ray cache): volume-local physical
coordinates in millimetres, in the array-axis order (z, y, x):

  world = (k * sz, j * sy, i * sx)   for voxel hu[k, j, i],

i.e. the centre of voxel [k, j, i] is at index * spacing, and the volume box
spans [-spacing / 2, (shape - 1/2) * spacing] along each axis. Because the
frame is in millimetres, anisotropic voxels render with true proportions.
Vectors (eye, centre, up, ray directions, gradients) are (z, y, x) triples.

Handedness: (z, y, x) is an odd permutation of (x, y, z). ``cross`` below is
the physical cross product of the right-handed (x, y, z) frame written in
(z, y, x) components, so 'right = forward x up' keeps images unmirrored.

HEAD CONVENTION (DICOM axial stacks, see rlhf_tf.data.volume): X = columns
run to the patient's left, Y = rows run anterior -> posterior (row 0 of an
axial image, at the top, is anterior), Z = slices run inferior -> superior
(slices sorted along the slice normal). So in world (z, y, x):
superior = (+1, 0, 0), posterior = (0, +1, 0), patient-left = (0, 0, +1).
The default head view (``head_camera``) looks at the face: the eye is anterior
(-y), up is superior (+z) and the patient's left appears on the image's right,
as when facing a person. Azimuth rotates the eye about the up axis towards
the patient's left (azimuth 90 = left profile); elevation raises it towards
the top of the head.

Image convention: row 0 of the [H, W] image is the top, column 0 the left.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.struct
import jax.numpy as jnp
import numpy as np

SUPERIOR = (1.0, 0.0, 0.0)
ANTERIOR = (0.0, -1.0, 0.0)


def cross(a, b):
  """Right-handed cross product of (z, y, x)-ordered vectors [..., 3]."""
  return jnp.flip(jnp.cross(jnp.flip(a, -1), jnp.flip(b, -1)), -1)


def _normalize(v):
  return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


@flax.struct.dataclass
class Camera:
  """A camera in world mm, (z, y, x) components.

  eye: (3,) eye position (perspective: centre of projection; orthographic:
    centre of the image plane). centre: (3,) the look-at point. up: (3,)
    approximate up direction (orthogonalised against the view direction).
  fov_deg: vertical field of view (perspective). ortho_width_mm: the width of
    the image plane in mm (orthographic); its height is width * H / W.
  """

  eye: jnp.ndarray
  centre: jnp.ndarray
  up: jnp.ndarray
  fov_deg: jnp.ndarray
  ortho_width_mm: jnp.ndarray
  width: int = flax.struct.field(pytree_node=False, default=256)
  height: int = flax.struct.field(pytree_node=False, default=256)
  projection: str = flax.struct.field(pytree_node=False, default='orthographic')

  def basis(self):
    """(forward, right, up) unit vectors, each (3,), right-handed."""
    forward = _normalize(self.centre - self.eye)
    right = _normalize(cross(forward, self.up))
    up = cross(right, forward)
    return forward, right, up


def make_camera(
    eye,
    centre,
    up=SUPERIOR,
    width=256,
    height=256,
    projection='orthographic',
    fov_deg=30.0,
    ortho_width_mm=256.0,
) -> Camera:
  """Builds a Camera, validating the static fields."""
  if projection not in ('orthographic', 'perspective'):
    raise ValueError(
        f"projection must be 'orthographic' or 'perspective', "
        f'got {projection!r}'
    )
  if int(width) < 1 or int(height) < 1:
    raise ValueError(f'image size must be positive, got {width}x{height}')
  f32 = lambda v: jnp.asarray(v, jnp.result_type(float))  # f64 under x64.
  return Camera(
      eye=f32(eye),
      centre=f32(centre),
      up=f32(up),
      fov_deg=f32(fov_deg),
      ortho_width_mm=f32(ortho_width_mm),
      width=int(width),
      height=int(height),
      projection=projection,
  )


def volume_box(shape: Sequence[int], spacing) -> tuple[np.ndarray, np.ndarray]:
  """(lo, hi) corners (3,) of the volume box in world mm (z, y, x)."""
  spacing = np.asarray(spacing, np.float64).reshape(3)
  shape = np.asarray(shape, np.float64).reshape(3)
  return -0.5 * spacing, (shape - 0.5) * spacing


def orbit_camera(
    shape: Sequence[int],
    spacing,
    azimuth_deg: float = 0.0,
    elevation_deg: float = 0.0,
    distance_mm=None,
    up=SUPERIOR,
    front=ANTERIOR,
    width: int = 256,
    height: int = 256,
    projection: str = 'orthographic',
    fov_deg: float = 30.0,
    ortho_width_mm=None,
    zoom: float = 1.0,
) -> Camera:
  """A camera orbiting the centre of a volume box.

  The eye lies at  centre + distance * (cos(el) (cos(az) f + sin(az) s)
  + sin(el) u)  with u = up, f = front (the eye direction at az = el = 0,
  orthogonalised against u) and s = u x f. The camera's own up vector is the
  elevation tangent, so it never degenerates, even at el = +-90.

  Args:
    shape: (Z, Y, X) voxel counts. spacing: (3,) mm along (Z, Y, X).
    azimuth_deg, elevation_deg: orbit angles in degrees.
    distance_mm: eye distance from the box centre; default frames the whole
      box: its bounding-sphere radius r plus margin (perspective:
      r / sin(fov / 2), orthographic: 2 r).
    up, front: orbit axes in world (z, y, x); defaults: superior, anterior.
    width, height: image size in pixels. projection: 'orthographic' or
      'perspective'. fov_deg: vertical field of view (perspective).
    ortho_width_mm: image-plane width; default the bounding-sphere diameter.
    zoom: divides ortho_width_mm (orthographic) or the distance (perspective).
  """
  lo, hi = volume_box(shape, spacing)
  centre = 0.5 * (lo + hi)
  radius = 0.5 * float(np.linalg.norm(hi - lo))
  u = np.asarray(up, np.float64)
  u = u / np.linalg.norm(u)
  f = np.asarray(front, np.float64)
  f = f - np.dot(f, u) * u
  if np.linalg.norm(f) < 1e-9:
    raise ValueError('front must not be parallel to up')
  f = f / np.linalg.norm(f)
  s = np.asarray(cross(jnp.asarray(u), jnp.asarray(f)), np.float64)
  az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
  horizontal = math.cos(az) * f + math.sin(az) * s
  to_eye = math.cos(el) * horizontal + math.sin(el) * u
  cam_up = -math.sin(el) * horizontal + math.cos(el) * u
  if distance_mm is None:
    if projection == 'perspective':
      distance_mm = radius / math.sin(math.radians(fov_deg) / 2) / zoom
    else:
      distance_mm = 2.0 * radius
  if ortho_width_mm is None:
    ortho_width_mm = 2.0 * radius / zoom * max(1.0, width / height)
  eye = centre + float(distance_mm) * to_eye
  return make_camera(
      eye, centre, cam_up, width, height, projection, fov_deg, ortho_width_mm
  )


def head_camera(
    shape: Sequence[int],
    spacing,
    width: int = 256,
    height: int = 256,
    azimuth_deg: float = 0.0,
    elevation_deg: float = 0.0,
    **kwargs,
) -> Camera:
  """The default head view: facing the patient (eye anterior, superior up,
  patient's left on the image right); see the module docstring."""
  return orbit_camera(
      shape,
      spacing,
      azimuth_deg,
      elevation_deg,
      width=width,
      height=height,
      **kwargs,
  )


def generate_rays(camera: Camera):
  """Rays through the pixel centres.

  Pixel (r, c) (row 0 at the top) has image-plane coordinates
  u = (c + 1/2) / W - 1/2 (to the right) and v = 1/2 - (r + 1/2) / H (up).
  Orthographic: origin = eye + u w right + v (w H / W) up, direction =
  forward (w = ortho_width_mm). Perspective: origin = eye, direction =
  normalise(forward + 2 tan(fov / 2) (u W / H right + v up)).

  Returns:
    (origins [H, W, 3], directions [H, W, 3] unit), world mm, (z, y, x).
  """
  h, w = camera.height, camera.width
  forward, right, up = camera.basis()
  dt = camera.eye.dtype
  u = (jnp.arange(w, dtype=dt) + 0.5) / w - 0.5
  v = 0.5 - (jnp.arange(h, dtype=dt) + 0.5) / h
  u, v = u[None, :, None], v[:, None, None]
  if camera.projection == 'orthographic':
    width_mm = camera.ortho_width_mm
    origins = camera.eye + u * width_mm * right + v * (width_mm * h / w) * up
    directions = jnp.broadcast_to(forward, origins.shape)
  elif camera.projection == 'perspective':
    tan_half = jnp.tan(jnp.deg2rad(camera.fov_deg) / 2)
    directions = _normalize(
        forward + 2 * tan_half * (u * (w / h) * right + v * up)
    )
    origins = jnp.broadcast_to(camera.eye, directions.shape)
  else:
    raise ValueError(f'unknown projection {camera.projection!r}')
  return origins, directions
