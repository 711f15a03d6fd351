"""Joint histogram (JH) of intensity x gradient magnitude, and its coordinates.

THE coordinate convention of rlhf_tf (actions, transfer functions, the reward
model and every figure use it):

- x = normalised intensity in [0, 1]:  x = (HU - hu_min) / (hu_max - hu_min)
- y = normalised gradient magnitude in [0, 1]:  y = |grad HU| / grad_max
  with |grad HU| in HU/mm (central differences in physical units, see
  ``rlhf_tf.render.gradient``).
- Values outside the window are clipped to the border bins.
- Images and TF tables on the JH grid are arrays ``[bins_y, bins_x]`` indexed
  ``[row = y bin, column = x bin]``; bin ``i`` covers ``[i, i + 1) / bins`` and
  its centre is ``(i + 0.5) / bins``. Plot with ``origin='lower'`` and
  ``extent=(0, 1, 0, 1)`` so that y (gradient) grows upwards.
"""

from __future__ import annotations

from typing import Optional, Sequence

from absl import logging
import flax.struct
import ml_collections
import numpy as np

from rlhf_tf.data.volume import Volume
from rlhf_tf.input_error import ConfigError
from rlhf_tf.render import gradient as gradient_lib


@flax.struct.dataclass
class JHAxes:
  """The mapping between JH coordinates [0, 1]^2 and physical units."""

  hu_min: float = flax.struct.field(pytree_node=False)
  hu_max: float = flax.struct.field(pytree_node=False)
  grad_max: float = flax.struct.field(pytree_node=False)  # HU/mm
  # What the intensities are: 'HU' for CT; a non-CT volume (loaded with
  # allow_non_ct) is labelled e.g. 'MR value' so no figure calls it HU.
  unit: str = flax.struct.field(pytree_node=False, default='HU')

  def hu_to_x(self, hu):
    return (hu - self.hu_min) / (self.hu_max - self.hu_min)

  def x_to_hu(self, x):
    return self.hu_min + x * (self.hu_max - self.hu_min)

  def grad_to_y(self, grad):
    return grad / self.grad_max

  def y_to_grad(self, y):
    return y * self.grad_max


@flax.struct.dataclass
class JointHistogram:
  """A JH: the log-scaled image in [0, 1], raw counts and its axes."""

  image: np.ndarray  # [bins_y, bins_x] float32 in [0, 1]
  counts: np.ndarray  # [bins_y, bins_x] int64 voxel counts
  axes: JHAxes

  @property
  def bins(self) -> int:
    return int(self.image.shape[-1])


def _validate(bins: int, hu_window, grad_percentile: float):
  """ConfigError naming the ``config.histogram`` key of a bad value."""
  if (
      isinstance(bins, (bool, str))
      or not isinstance(bins, (int, np.integer))
      or bins < 2
      or bins > 1 << 14
  ):
    raise ConfigError(
        f'histogram.bins must be an integer in [2, 16384], got ' f'{bins!r}'
    )
  if (
      isinstance(grad_percentile, (bool, str))
      or not isinstance(grad_percentile, (int, float, np.number))
      or not 0.0 < grad_percentile <= 100.0
  ):
    raise ConfigError(
        f'histogram.grad_percentile must be in (0, 100], got '
        f'{grad_percentile!r}'
    )
  if hu_window is not None:
    try:
      lo, hi = (float(v) for v in hu_window)
    except (TypeError, ValueError):
      lo, hi = np.nan, np.nan
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
      raise ConfigError(
          f'histogram.hu_window must be (low, high) HU with '
          f'high > low, got {hu_window!r}'
      )


def _percentile_from_histogram(
    values: np.ndarray, q: float, fine_bins: int = 65536
) -> float:
  """q-th percentile of non-negative values, to 1/fine_bins of their max.

  A fine histogram instead of a sort: O(n) and no copy of the volume, which
  matters for 10^8 voxels.
  """
  finite = np.isfinite(values)
  if not finite.all():
    # Overflowed gradients (voxels near the float32 limit) count as the
    # largest finite value, so one corrupt voxel cannot set the scale.
    values = np.where(finite, values, 0.0)
    top = float(values.max())
    values = np.where(finite, values, top)
  vmax = float(values.max())
  if vmax <= 0.0:
    return 0.0
  counts = np.zeros(fine_bins, np.int64)
  flat = values.reshape(-1)
  chunk = 1 << 24
  for start in range(0, flat.size, chunk):
    part = flat[start : start + chunk]
    idx = np.minimum(
        (part * (fine_bins / vmax)).astype(np.int64), fine_bins - 1
    )
    counts += np.bincount(idx, minlength=fine_bins)
  cdf = np.cumsum(counts)
  k = int(np.searchsorted(cdf, q / 100.0 * cdf[-1]))
  return (k + 1) * vmax / fine_bins


def intensity_unit(volume: Volume) -> str:
  """'HU' for CT, else e.g. 'MR value' (never HU for a non-CT volume)."""
  modality = str(volume.modality or 'CT').upper()
  return 'HU' if modality == 'CT' else f'{modality} value'


def make_axes(
    volume: Volume,
    grad_mag: np.ndarray,
    hu_window: Optional[Sequence[float]] = None,
    grad_percentile: float = 99.5,
) -> JHAxes:
  """Axes for a volume: HU window (default: the volume's range) and the
  gradient range up to the given percentile of |grad|."""
  if hu_window is None:
    hu = np.asarray(volume.hu)
    hu_window = (float(hu.min()), float(hu.max()))
    if hu_window[1] <= hu_window[0]:
      hu_window = (hu_window[0], hu_window[0] + 1.0)
  grad_max = _percentile_from_histogram(grad_mag, grad_percentile)
  if grad_max <= 0.0:
    grad_max = 1.0  # A constant volume: any positive scale maps 0 to y = 0.
  return JHAxes(
      hu_min=float(hu_window[0]),
      hu_max=float(hu_window[1]),
      grad_max=float(grad_max),
      unit=intensity_unit(volume),
  )


def bin_counts(
    hu: np.ndarray, grad_mag: np.ndarray, axes: JHAxes, bins: int
) -> np.ndarray:
  """[bins, bins] voxel counts (row = gradient bin, column = intensity bin)."""
  counts = np.zeros(bins * bins, np.int64)
  hu_flat, g_flat = hu.reshape(-1), grad_mag.reshape(-1)
  chunk = 1 << 23
  sx = bins / (axes.hu_max - axes.hu_min)
  sy = bins / axes.grad_max
  for start in range(0, hu_flat.size, chunk):
    h = hu_flat[start : start + chunk].astype(np.float64)
    g = g_flat[start : start + chunk].astype(np.float64)
    # Clip before the integer cast: inf (an overflowed gradient) would cast
    # to an arbitrary integer and land in a wrong bin.
    ix = np.clip((h - axes.hu_min) * sx, 0, bins - 1).astype(np.int64)
    iy = np.clip(np.nan_to_num(g * sy, nan=bins - 1.0), 0, bins - 1).astype(
        np.int64
    )
    counts += np.bincount(iy * bins + ix, minlength=bins * bins)
  return counts.reshape(bins, bins)


def normalise_counts(counts: np.ndarray) -> np.ndarray:
  """log(1 + counts) scaled to [0, 1] (the JH image the agent sees, eq. 1)."""
  logc = np.log1p(counts.astype(np.float64))
  top = logc.max()
  return (logc / top if top > 0 else logc).astype(np.float32)


def default_config() -> ml_collections.ConfigDict:
  """``config.histogram``: bins, HU window (12-bit CT range), |grad| pct."""
  return ml_collections.ConfigDict(
      dict(bins=256, hu_window=(-1024.0, 3071.0), grad_percentile=99.5)
  )


def from_config(
    volume: Volume, cfg, grad_mag: Optional[np.ndarray] = None
) -> 'JointHistogram':
  """The JH a ``config.histogram`` block describes (empty window = the
  volume's range)."""
  window = tuple(cfg.hu_window) if cfg.hu_window else None
  return joint_histogram(
      volume,
      bins=cfg.bins,
      hu_window=window,
      grad_percentile=cfg.grad_percentile,
      grad_mag=grad_mag,
  )


def joint_histogram(
    volume: Volume,
    bins: int = 256,
    hu_window: Optional[Sequence[float]] = None,
    grad_percentile: float = 99.5,
    grad_mag: Optional[np.ndarray] = None,
) -> JointHistogram:
  """The JH of a volume (paper eq. 1: the state s = I_JH).

  Args:
    volume: the CT volume.
    bins: bins per axis (the image is bins x bins).
    hu_window: (low, high) HU mapped to x = 0 and 1; None = volume range.
    grad_percentile: |grad| percentile mapped to y = 1 (larger values clip).
    grad_mag: precomputed gradient magnitude (HU/mm), to avoid recomputing.

  Returns:
    JointHistogram with the normalised log image, counts and axes.
  """
  _validate(bins, hu_window, grad_percentile)
  hu = np.asarray(volume.hu, np.float32)
  if grad_mag is None:
    logging.info(
        'JH: gradient magnitude of %s voxels', 'x'.join(map(str, hu.shape))
    )
    grad_mag = gradient_lib.gradient_magnitude(hu, volume.spacing)
  overflowed = int(np.size(grad_mag) - np.count_nonzero(np.isfinite(grad_mag)))
  if overflowed:
    logging.warning(
        'JH of %s: %d voxel(s) have a non-finite gradient '
        'magnitude (values near the float32 limit?); they count '
        'in the top gradient bin',
        volume.name,
        overflowed,
    )
  axes = make_axes(volume, grad_mag, hu_window, grad_percentile)
  counts = bin_counts(hu, grad_mag, axes, int(bins))
  return JointHistogram(
      image=normalise_counts(counts), counts=counts, axes=axes
  )
