"""Figures of a volume and its joint histogram: the `inspect` job's slices
and tissue groups, the `render` job's polygon on the JH, the preference UI's
JH panel. The JH itself is drawn by ``figures_style.draw_jh_image``.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use('Agg')
from matplotlib import patches  # pylint: disable=g-import-not-at-top
from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from rlhf_tf.data.volume import Volume
from rlhf_tf.evaluation import figures_style
from rlhf_tf.render.histogram import JointHistogram


def jh_with_polygon_png(jh: JointHistogram, vertices, path: str) -> str:
  """The JH in physical units (HU, HU/mm) with one action's polygon
  [n, 2] outlined (the render job's jh_<i>.png)."""
  fig = Figure(figsize=(5, 4.2))
  ax = fig.add_subplot()
  figures_style.draw_jh_image(
      ax, jh, cmap='magma', title='action on the joint histogram'
  )
  xy = figures_style.to_plot(np.asarray(vertices, np.float64), jh.axes)
  closed = np.concatenate([xy, xy[:1]])
  ax.plot(closed[:, 0], closed[:, 1], '-o', color='#38b6ff', lw=2, ms=4)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path


def jh_polygons_png(
    jh_image: np.ndarray,
    polygons,
    colors,
    size_px: int = 384,
    fill: bool = False,
) -> bytes:
  """PNG bytes of the JH image [B, B] (JH units, no axes) with polygon
  outlines (or fills) in the given colours: the preference UI's JH panel.

  Uses matplotlib's object API (no pyplot state), so server threads can draw
  at the same time.
  """
  fig = Figure(figsize=(size_px / 100, size_px / 100), dpi=100)
  ax = fig.add_axes((0, 0, 1, 1))
  figures_style.draw_jh_image(ax, jh_image, cmap='gray')
  for verts, color in zip(polygons, colors):
    ax.add_patch(
        patches.Polygon(
            np.asarray(verts),
            closed=True,
            fill=fill,
            facecolor=color,
            alpha=0.35 if fill else 1.0,
            edgecolor=color,
            linewidth=2.0,
        )
    )
    if fill:
      ax.add_patch(
          patches.Polygon(
              np.asarray(verts),
              closed=True,
              fill=False,
              edgecolor=color,
              linewidth=2.0,
          )
      )
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_axis_off()
  buf = io.BytesIO()
  fig.savefig(buf, format='png', facecolor='black')
  return buf.getvalue()


def orthogonal_slices_figure(
    volume: Volume, jh: JointHistogram, path: str, window=(-1000.0, 2000.0)
) -> str:
  """Axial, coronal and sagittal centre slices (true mm proportions) + JH."""
  hu = np.asarray(volume.hu)
  dz, dy, dx = (float(s) for s in np.asarray(volume.spacing))
  nz, ny, nx = hu.shape
  # Axial: row 0 on top, as DICOM shows it. Coronal / sagittal: slice 0
  # (inferior in a feet-first-sorted stack) at the bottom, head upright.
  views = [
      (
          'axial (z = %d)' % (nz // 2),
          hu[nz // 2],
          (0, nx * dx, ny * dy, 0),
          'upper',
          'x (mm)',
          'y (mm)',
      ),
      (
          'coronal (y = %d)' % (ny // 2),
          hu[:, ny // 2, :],
          (0, nx * dx, 0, nz * dz),
          'lower',
          'x (mm)',
          'z (mm)',
      ),
      (
          'sagittal (x = %d)' % (nx // 2),
          hu[:, :, nx // 2],
          (0, ny * dy, 0, nz * dz),
          'lower',
          'y (mm)',
          'z (mm)',
      ),
  ]
  fig, axes = plt.subplots(1, 4, figsize=(18, 4.8))
  for ax, (title, image, extent, origin, xl, yl) in zip(axes[:3], views):
    im = ax.imshow(
        image,
        cmap='gray',
        vmin=window[0],
        vmax=window[1],
        extent=extent,
        origin=origin,
        interpolation='nearest',
    )
    ax.set_title(title)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
  fig.colorbar(im, ax=axes[2], label=jh.axes.unit, fraction=0.046)
  figures_style.draw_jh_image(
      axes[3], jh, cmap='magma', title='joint histogram (log counts)'
  )
  fig.suptitle(
      f'{volume.name}: {nz}x{ny}x{nx} voxels, spacing '
      f'{dz:.3g} x {dy:.3g} x {dx:.3g} mm (z, y, x)'
  )
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


# Group colours (tissues.GROUPS order: teeth, bone, soft, air, metal,
# support), RGBA over the grey CT; air stays transparent.
GROUP_COLOURS = (
    (1.0, 0.95, 0.3, 0.75),
    (0.95, 0.5, 0.2, 0.6),
    (0.3, 0.6, 1.0, 0.25),
    (0.0, 0.0, 0.0, 0.0),
    (0.9, 0.1, 0.9, 0.85),
    (0.1, 0.9, 0.3, 0.8),
)


def tissue_groups_figure(
    volume: Volume, groups, group_names, path: str, window=(-1000.0, 2000.0)
) -> str:
  """Axial, coronal and sagittal slices with each voxel's tissue group
  (uint8 [Z, Y, X], values index group_names) coloured over the CT; the
  axial slice is the one with the most voxels of the last group (supports)
  when there are any."""
  hu = np.asarray(volume.hu)
  groups = np.asarray(groups)
  dz, dy, dx = (float(s) for s in np.asarray(volume.spacing))
  nz, ny, nx = hu.shape
  last = groups == len(group_names) - 1
  kz = int(last.sum(axis=(1, 2)).argmax()) if last.any() else nz // 2
  colours = np.asarray(GROUP_COLOURS[: len(group_names)], np.float32)
  views = [
      (f'axial (z = {kz})', np.s_[kz], (0, nx * dx, ny * dy, 0), 'upper'),
      (
          f'coronal (y = {ny // 2})',
          np.s_[:, ny // 2, :],
          (0, nx * dx, 0, nz * dz),
          'lower',
      ),
      (
          f'sagittal (x = {nx // 2})',
          np.s_[:, :, nx // 2],
          (0, ny * dy, 0, nz * dz),
          'lower',
      ),
  ]
  fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
  for ax, (title, index, extent, origin) in zip(axes, views):
    ax.imshow(
        hu[index],
        cmap='gray',
        vmin=window[0],
        vmax=window[1],
        extent=extent,
        origin=origin,
        interpolation='nearest',
    )
    ax.imshow(
        colours[groups[index]],
        extent=extent,
        origin=origin,
        interpolation='nearest',
    )
    ax.set_title(title)
  counts = np.bincount(groups.reshape(-1), minlength=len(group_names))
  handles = [
      patches.Patch(
          color=colours[i][:3], label=(f'{name}: {counts[i] / groups.size:.1%}')
      )
      for i, name in enumerate(group_names)
      if colours[i][3] > 0
  ]
  axes[-1].legend(handles=handles, loc='lower right', fontsize=8)
  fig.suptitle(
      f'{volume.name}: tissue groups the simulated inspector judges ' f'by'
  )
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
