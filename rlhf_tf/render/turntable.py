"""Turntables: one volume seen from many azimuths with compiled code reused.

A ``Turntable`` holds what every view of a volume shares -- the packed
volume (HU + gradient) and its empty-space block ranges -- and renders any
TF table from any camera of its image size with the direct renderer
(``raymarch.render``, early ray termination and empty-space skipping on):
the camera is a traced argument, so all views and all TFs of one table size
run one compiled program (tests/test_turntable.py counts them). For many
TFs of one fixed view the ray cache (``rlhf_tf.render.ray_cache``) is
faster; a turntable renders few TFs from many views.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from rlhf_tf.render import camera as camera_lib
from rlhf_tf.render import empty_space, raymarch, render_settings, sampling


def turntable_azimuths(start_deg: float, num_views: int) -> list[float]:
  """num_views azimuths (degrees) evenly around the head from start_deg."""
  return [float(start_deg) + 360.0 * k / num_views for k in range(num_views)]


class Turntable:
  """The shared, view-independent inputs of a volume's renderings."""

  def __init__(
      self, volume, axes, settings: render_settings.RenderSettings, packed=None
  ):
    """volume: rlhf_tf.data.volume.Volume; axes: its JH axes; settings: the
    render settings of every view; packed: optional packed_volume."""
    self.volume = volume
    self.axes = axes
    self.settings = settings
    self.spacing = tuple(float(s) for s in np.asarray(volume.spacing))
    self.packed = (
        sampling.packed_volume(volume.hu, self.spacing)
        if packed is None
        else packed
    )
    self.ranges = empty_space.block_ranges(
        self.packed, self.spacing, settings.step_mm
    )

  def camera(
      self, size: int, azimuth_deg: float, elevation_deg: float, zoom: float
  ) -> camera_lib.Camera:
    """The head camera (camera.head_camera) of one view."""
    return camera_lib.head_camera(
        self.volume.shape,
        self.spacing,
        width=int(size),
        height=int(size),
        azimuth_deg=float(azimuth_deg),
        elevation_deg=float(elevation_deg),
        zoom=float(zoom),
    )

  def render(self, tf_table, camera: camera_lib.Camera):
    """[H, W, 4] RGBA of a TF table [bins, bins, 4] from a camera."""
    return raymarch.render(
        None,
        None,
        self.spacing,
        self.axes,
        tf_table,
        camera,
        self.settings,
        packed=self.packed,
        ranges=self.ranges,
    )

  def frames(self, tf_table, cameras: Iterable[camera_lib.Camera]) -> list:
    """[H, W, 3] uint8 frames of one TF table from each camera."""
    out = []
    for cam in cameras:
      rgba = np.asarray(self.render(tf_table, cam))
      out.append(
          np.round(np.clip(rgba[..., :3], 0.0, 1.0) * 255).astype(np.uint8)
      )
    return out
