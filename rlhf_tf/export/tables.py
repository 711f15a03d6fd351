"""Two transfer-function representations and their evaluation on a JH grid.

TFTable: the project's own 2D TF, lossless: RGBA [bins_y, bins_x, 4] over
  (HU, gradient magnitude HU/mm) with the axes of the JH it was made on
  (``rlhf_tf.render.histogram`` conventions: row = gradient bin, column =
  intensity bin, bin i centred at (i + 0.5) / bins of the axis).

SeparableTF: what VTK's vtkVolumeProperty (1D mode), 3D Slicer and ParaView
  hold: a piecewise-linear scalar opacity s(HU), a gradient opacity g(|grad|)
  and a colour c(HU); the opacity of a sample is s(HU) * g(|grad|). Points
  are (x, value) rows; between points the functions are linear and beyond the
  end points constant (VTK's clamping).

Opacity units: both carry ``unit_distance_mm``, the path length their alpha is
for (VTK's ScalarOpacityUnitDistance; the renderer's reference_step_mm). On
another step the opacity is corrected as a' = 1 - (1 - a)^(step / unit)
(``rescale_opacity``), the same correction the raymarcher applies per sample.

Gradient units: the table's y axis is |grad HU| in HU/mm. VTK's CPU and GPU
ray casters measure the gradient magnitude in HU per *mean voxel spacing*
(central differences divided by an aspect 2 * spacing / mean spacing, see
vtkFixedPointVolumeRayCastMapperComputeGradients), so gradient-opacity points
written for VTK, Slicer and ParaView are |grad| * mean_spacing_mm
(``SeparableTF.gradient_scale_mm``; 1.0 = HU/mm).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rlhf_tf.render import transfer_function
from rlhf_tf.render.histogram import JHAxes


def rescale_opacity(alpha, from_unit_mm: float, to_unit_mm: float):
  """Opacity per ``to_unit_mm`` of path from opacity per ``from_unit_mm``.

  a' = 1 - (1 - a)^(to / from): the same absorption coefficient (the
  raymarcher's opacity correction); exact identity when the units agree.
  """
  alpha = np.clip(np.asarray(alpha, np.float64), 0.0, 1.0)
  if from_unit_mm == to_unit_mm:
    return alpha
  if from_unit_mm <= 0 or to_unit_mm <= 0:
    raise ValueError(
        f'opacity unit distances must be > 0, got '
        f'{from_unit_mm} and {to_unit_mm}'
    )
  with np.errstate(divide='ignore'):
    return 1.0 - np.power(1.0 - alpha, to_unit_mm / from_unit_mm)


def bin_centres_hu(axes: JHAxes, bins: int) -> np.ndarray:
  """[bins] HU at the JH's intensity bin centres."""
  return axes.x_to_hu((np.arange(bins) + 0.5) / bins)


def bin_centres_grad(axes: JHAxes, bins: int) -> np.ndarray:
  """[bins] |grad| (HU/mm) at the JH's gradient bin centres."""
  return axes.y_to_grad((np.arange(bins) + 0.5) / bins)


@dataclasses.dataclass(frozen=True)
class TFTable:
  """A lossless 2D TF: RGBA over (HU, |grad| HU/mm).

  Attributes:
    rgba: [bins_y, bins_x, 4] float32 in [0, 1], [row = gradient bin,
      column = intensity bin]; alpha is per ``unit_distance_mm`` of path.
    hu_min, hu_max: intensity axis (HU at x = 0 and x = 1).
    grad_max: gradient axis (HU/mm at y = 1); y = 0 is 0 HU/mm.
    unit_distance_mm: the path length the alpha is for.
    name: what the table is (shown in files and figures).
  """

  rgba: np.ndarray
  hu_min: float
  hu_max: float
  grad_max: float
  unit_distance_mm: float = 1.0
  name: str = 'rlhf_tf'

  def __post_init__(self):
    rgba = np.asarray(self.rgba, np.float32)
    if rgba.ndim != 3 or rgba.shape[-1] != 4 or min(rgba.shape[:2]) < 2:
      raise ValueError(
          f'TF table {self.name!r}: rgba must be [bins_y >= 2, '
          f'bins_x >= 2, 4], got {rgba.shape}'
      )
    if not np.all(np.isfinite(rgba)) or rgba.min() < 0 or rgba.max() > 1:
      raise ValueError(
          f'TF table {self.name!r}: rgba must be finite and in ' f'[0, 1]'
      )
    if not (
        np.isfinite(self.hu_min)
        and np.isfinite(self.hu_max)
        and self.hu_max > self.hu_min
    ):
      raise ValueError(
          f'TF table {self.name!r}: need hu_max > hu_min, got '
          f'{self.hu_min}, {self.hu_max}'
      )
    if not (np.isfinite(self.grad_max) and self.grad_max > 0):
      raise ValueError(
          f'TF table {self.name!r}: grad_max must be > 0, got '
          f'{self.grad_max}'
      )
    if not self.unit_distance_mm > 0:
      raise ValueError(
          f'TF table {self.name!r}: unit_distance_mm must be '
          f'> 0, got {self.unit_distance_mm}'
      )
    object.__setattr__(self, 'rgba', rgba)

  @property
  def axes(self) -> JHAxes:
    return JHAxes(
        hu_min=float(self.hu_min),
        hu_max=float(self.hu_max),
        grad_max=float(self.grad_max),
    )

  @property
  def bins_x(self) -> int:
    return int(self.rgba.shape[1])

  @property
  def bins_y(self) -> int:
    return int(self.rgba.shape[0])


def polygon_table(
    vertices,
    axes: JHAxes,
    bins: int,
    tau: float,
    alpha_max: float,
    unit_distance_mm: float,
    colormap: str = 'bone',
    hard: bool = False,
    name: str = 'rlhf_tf',
) -> TFTable:
  """The TFTable of a polygon action (eq. 2), as the renderer sees it."""
  rgba = transfer_function.tf_table(
      np.asarray(vertices, np.float32),
      bins,
      tau=tau,
      alpha_max=alpha_max,
      colormap=colormap,
      hard=hard,
  )
  return TFTable(
      rgba=np.asarray(rgba),
      hu_min=axes.hu_min,
      hu_max=axes.hu_max,
      grad_max=axes.grad_max,
      unit_distance_mm=unit_distance_mm,
      name=name,
  )


def _check_points(name: str, what: str, points, width: int) -> np.ndarray:
  p = np.asarray(points, np.float64)
  if p.ndim != 2 or p.shape[1] != width or len(p) < 1:
    raise ValueError(
        f'{name}: {what} must be rows of {width} numbers, got '
        f'shape {p.shape}'
    )
  if not np.all(np.isfinite(p)):
    raise ValueError(f'{name}: {what} holds a non-finite number')
  if np.any(np.diff(p[:, 0]) < 0):
    raise ValueError(f'{name}: {what} x values must be non-decreasing')
  if p[:, 1:].min() < 0 or p[:, 1:].max() > 1:
    raise ValueError(f'{name}: {what} values must lie in [0, 1]')
  return p


def interp_points(points: np.ndarray, x) -> np.ndarray:
  """Piecewise-linear function of (x, value...) rows at x, clamped beyond
  the end points (VTK's default). Returns [len(x), columns - 1]."""
  x = np.asarray(x, np.float64)
  return np.stack(
      [
          np.interp(x, points[:, 0], points[:, k])
          for k in range(1, points.shape[1])
      ],
      axis=-1,
  )


@dataclasses.dataclass(frozen=True)
class Shading:
  """vtkVolumeProperty lighting (the renderer's RenderSettings defaults)."""

  shade: bool = True
  ambient: float = 0.35
  diffuse: float = 0.65
  specular: float = 0.25
  specular_power: float = 16.0


@dataclasses.dataclass(frozen=True)
class SeparableTF:
  """Scalar opacity x gradient opacity, colour over HU (VTK 1D mode).

  Attributes:
    scalar_opacity: [K, 2] (HU, opacity per unit_distance_mm).
    gradient_opacity: [M, 2] (|grad| in HU per gradient_scale_mm, factor).
    color: [C, 4] (HU, r, g, b).
    unit_distance_mm: path length the scalar opacity is for.
    gradient_scale_mm: gradient x = |grad HU/mm| * gradient_scale_mm (the
      mean voxel spacing for VTK-based viewers, 1.0 for HU/mm).
    shading: lighting.
    name: preset name.
  """

  scalar_opacity: np.ndarray
  gradient_opacity: np.ndarray
  color: np.ndarray
  unit_distance_mm: float = 1.0
  gradient_scale_mm: float = 1.0
  shading: Shading = Shading()
  name: str = 'rlhf_tf'

  def __post_init__(self):
    for field, width in (
        ('scalar_opacity', 2),
        ('gradient_opacity', 2),
        ('color', 4),
    ):
      object.__setattr__(
          self,
          field,
          _check_points(self.name, field, getattr(self, field), width),
      )
    if not self.unit_distance_mm > 0 or not self.gradient_scale_mm > 0:
      raise ValueError(
          f'{self.name}: unit_distance_mm and gradient_scale_mm ' f'must be > 0'
      )

  def table(
      self, axes: JHAxes, bins: int, unit_distance_mm: float | None = None
  ) -> TFTable:
    """The TF sampled at the bin centres of a JH grid.

    alpha[i, j] = s(HU_j) * g(grad_i * gradient_scale_mm), converted to
    ``unit_distance_mm`` (default: the TF's own); rgb[i, j] = c(HU_j).
    """
    unit = float(unit_distance_mm or self.unit_distance_mm)
    hu = bin_centres_hu(axes, bins)
    grad = bin_centres_grad(axes, bins) * self.gradient_scale_mm
    s = interp_points(self.scalar_opacity, hu)[:, 0]
    g = interp_points(self.gradient_opacity, grad)[:, 0]
    alpha = rescale_opacity(
        g[:, None] * s[None, :], self.unit_distance_mm, unit
    )
    rgb = np.broadcast_to(interp_points(self.color, hu)[None], (bins, bins, 3))
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1)
    return TFTable(
        rgba=np.clip(rgba, 0.0, 1.0),
        hu_min=axes.hu_min,
        hu_max=axes.hu_max,
        grad_max=axes.grad_max,
        unit_distance_mm=unit,
        name=self.name,
    )


def resample_table(
    table: TFTable,
    axes: JHAxes,
    bins: int,
    unit_distance_mm: float | None = None,
) -> TFTable:
  """A TFTable on another JH grid (bilinear between bin centres, clamped at
  the borders like the raymarcher's lookup), opacity converted to
  ``unit_distance_mm`` (default: the table's)."""
  unit = float(unit_distance_mm or table.unit_distance_mm)
  hu = bin_centres_hu(axes, bins)
  grad = bin_centres_grad(axes, bins)
  # Continuous bin index of the source table at the target centres.
  fx = np.clip(
      (hu - table.hu_min) / (table.hu_max - table.hu_min) * table.bins_x - 0.5,
      0,
      table.bins_x - 1,
  )
  fy = np.clip(grad / table.grad_max * table.bins_y - 0.5, 0, table.bins_y - 1)
  x0 = np.minimum(np.floor(fx).astype(int), table.bins_x - 2)
  y0 = np.minimum(np.floor(fy).astype(int), table.bins_y - 2)
  wx = (fx - x0)[None, :, None]
  wy = (fy - y0)[:, None, None]
  t = table.rgba.astype(np.float64)
  top = t[y0][:, x0] * (1 - wx) + t[y0][:, x0 + 1] * wx
  bottom = t[y0 + 1][:, x0] * (1 - wx) + t[y0 + 1][:, x0 + 1] * wx
  rgba = top * (1 - wy) + bottom * wy
  rgba[..., 3] = rescale_opacity(rgba[..., 3], table.unit_distance_mm, unit)
  return TFTable(
      rgba=np.clip(rgba, 0.0, 1.0),
      hu_min=axes.hu_min,
      hu_max=axes.hu_max,
      grad_max=axes.grad_max,
      unit_distance_mm=unit,
      name=table.name,
  )
