"""Shared style and helpers of the evaluation figures (``figures*``).

One colour and one label per loss, font sizes, Figure creation / saving
(object API, Agg, thread-safe), input checks, and drawing a JH image in JH
units [0, 1]^2 or, with a JHAxes, in HU and HU/mm.
"""

from __future__ import annotations

import os
from typing import Mapping

from matplotlib.figure import Figure
import numpy as np

LOSS_LABELS = {
    'ce': r'$\mathcal{L}_C$ (cross-entropy, ties kept)',
    'nll': r'$\mathcal{L}_L$ (NLL, ties dropped)',
    'davidson': r'$\mathcal{L}_D$ (Davidson, ties modelled)',
}
LOSS_COLORS = {'ce': '#1f77b4', 'nll': '#e66101', 'davidson': '#1b9e77'}
_EXTRA_COLORS = ('#5e3c99', '#1b9e77', '#7f7f7f', '#b2182b')
INSPECTOR_CMAP = 'RdYlGn'  # inspector quality 0 (red) .. 1 (green)
TITLE_SIZE = 11
LABEL_SIZE = 10
SMALL_SIZE = 8.5
DPI = 150


def loss_label(loss: str) -> str:
  """'ce' -> '$L_C$ (cross-entropy, ties kept)'; unknown keys unchanged."""
  return LOSS_LABELS.get(loss, str(loss))


def loss_color(loss: str, index: int = 0) -> str:
  """The colour of a loss in every figure (fallback by position)."""
  return LOSS_COLORS.get(loss, _EXTRA_COLORS[index % len(_EXTRA_COLORS)])


def panel_letter(i: int) -> str:
  return '(%s)' % 'abcdefghijklmnopqrstuvwxyz'[i % 26]


def new_figure(width: float, height: float) -> Figure:
  """A constrained-layout Figure not registered with pyplot."""
  return Figure(figsize=(width, height), layout='constrained')


def save_figure(fig: Figure, path, dpi: int = DPI) -> str:
  """Writes ``fig`` as PNG to ``path`` (parent folders created)."""
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  fig.savefig(
      path,
      dpi=dpi,
      format='png',
      facecolor='white',
      pil_kwargs={'compress_level': 3},
  )  # ~3x faster, same size
  return path


def as_rgb(image, name: str = 'image') -> np.ndarray:
  """[H, W, 3|4] float in [0, 1] or uint8 -> float [H, W, 3] in [0, 1].

  RGBA renderings are already composited over their background
  (``raymarch.render``), so alpha is dropped.
  """
  a = np.asarray(image)
  if a.ndim != 3 or a.shape[-1] not in (3, 4) or min(a.shape[:2]) < 1:
    raise ValueError(
        f'{name} must be [H, W, 3] or [H, W, 4], got shape ' f'{a.shape}'
    )
  a = a[..., :3]
  if a.dtype == np.uint8:
    return a.astype(np.float32) / 255.0
  a = a.astype(np.float32)
  if not np.all(np.isfinite(a)):
    raise ValueError(f'{name} has non-finite values')
  return np.clip(a, 0.0, 1.0)


def check_polygon(action, name: str = 'action') -> np.ndarray:
  """[n, 2] (x, y) vertices in JH units -> float64 array (n >= 3)."""
  a = np.asarray(action, dtype=np.float64)
  if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 3:
    raise ValueError(
        f'{name} must be [n, 2] with n >= 3 vertices, got shape ' f'{a.shape}'
    )
  if not np.all(np.isfinite(a)):
    raise ValueError(f'{name} has non-finite vertices')
  return a


def unpack_jh(jh_image, axes=None):
  """A [B, B] image or a JointHistogram -> (image [B, B], axes or None)."""
  if hasattr(jh_image, 'image') and hasattr(jh_image, 'axes'):
    axes = jh_image.axes if axes is None else axes
    jh_image = jh_image.image
  image = np.asarray(jh_image, dtype=np.float32)
  if image.ndim != 2 or min(image.shape) < 2:
    raise ValueError(
        f'jh_image must be a [B, B] image, got shape ' f'{image.shape}'
    )
  return image, axes


def jh_extent(axes=None):
  """imshow extent: JH units (0, 1, 0, 1) or (hu_min, hu_max, 0, grad_max)."""
  if axes is None:
    return (0.0, 1.0, 0.0, 1.0)
  return (float(axes.hu_min), float(axes.hu_max), 0.0, float(axes.grad_max))


def to_plot(xy, axes=None) -> np.ndarray:
  """[..., 2] JH coordinates -> plot coordinates (identity or HU, HU/mm)."""
  xy = np.asarray(xy, dtype=np.float64)
  if axes is None:
    return xy
  return np.stack([axes.x_to_hu(xy[..., 0]), axes.y_to_grad(xy[..., 1])], -1)


def draw_jh_image(
    ax,
    image,
    axes=None,
    cmap='gray',
    title=None,
    xlabel=True,
    ylabel=True,
    **imshow_kw,
):
  """Draws a [B, B] JH image (row = y = gradient) like ``draw_jh``.

  With ``axes`` (a JHAxes) the plot is in HU and HU/mm; without it in JH
  units [0, 1]^2 with a square aspect. Returns the AxesImage.
  """
  image, axes = unpack_jh(image, axes)
  im = ax.imshow(
      image,
      origin='lower',
      extent=jh_extent(axes),
      aspect='equal' if axes is None else 'auto',
      cmap=cmap,
      interpolation='nearest',
      **imshow_kw,
  )
  if axes is None:
    xl, yl = 'intensity x (JH units)', 'gradient magnitude y (JH units)'
  else:
    unit = getattr(axes, 'unit', 'HU')
    xl, yl = f'intensity ({unit})', f'gradient magnitude ({unit}/mm)'
  if xlabel:
    ax.set_xlabel(xl, fontsize=LABEL_SIZE)
  if ylabel:
    ax.set_ylabel(yl, fontsize=LABEL_SIZE)
  if title:
    ax.set_title(title, fontsize=TITLE_SIZE)
  ax.tick_params(labelsize=SMALL_SIZE)
  return im


def check_losses(by_loss: Mapping, name: str):
  if not isinstance(by_loss, Mapping) or not by_loss:
    raise ValueError(f'{name} must be a non-empty dict loss -> values')


def rewards_1d(values, name: str) -> np.ndarray:
  r = np.asarray(values, dtype=np.float64).ravel()
  if r.size == 0:
    raise ValueError(f'{name} is empty')
  if not np.all(np.isfinite(r)):
    raise ValueError(f'{name} has non-finite rewards')
  return r


def format_stat(value) -> str:
  if isinstance(value, (int, np.integer)):
    return f'{value:,}'
  v = float(value)
  return f'{v:.3g}' if abs(v) < 1e4 else f'{v:.3e}'
