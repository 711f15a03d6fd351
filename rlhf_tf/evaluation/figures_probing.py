"""Figures that probe the reward model on the JH (paper Fig. 3, gradients).

``corner_plots``: the reward of one vertex moved over the whole JH while the
others stay at the expert polygon. ``gradient_arrows``: dr/dvertices at the
expert polygon. Inputs are plain numpy arrays in JH units ([0, 1]^2, x =
intensity, y = gradient magnitude); with a JHAxes the plots read in HU and
HU/mm. The shared style and helpers are in ``figures_style``.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from rlhf_tf.evaluation import figures_style as F

HEAT_CMAP = 'viridis'
HEAT_ALPHA = 0.6
VERTEX_COLOR = '#e41a1c'  # the probed vertex
POLY_COLOR = 'white'  # the expert / base polygon
POSITION_COLORS = {'low': '#ff7f00', 'medium': '#f781bf', 'high': '#00e5ff'}
_POSITION_FALLBACK = ('#ff7f00', '#f781bf', '#00e5ff', '#ffff33')


def _draw_polygon(
    ax,
    poly,
    axes,
    color=POLY_COLOR,
    lw=1.3,
    ls='-',
    alpha=1.0,
    label=None,
    zorder=3,
):
  p = F.to_plot(np.concatenate([poly, poly[:1]], 0), axes)
  ax.plot(
      p[:, 0],
      p[:, 1],
      color=color,
      lw=lw,
      ls=ls,
      alpha=alpha,
      label=label,
      zorder=zorder,
  )
  return p[:-1]


def _check_maps(maps_by_loss, n):
  F.check_losses(maps_by_loss, 'maps_by_loss')
  out = {}
  for loss, m in maps_by_loss.items():
    m = np.asarray(m, dtype=np.float64)
    if (
        m.ndim != 3
        or m.shape[0] != n
        or m.shape[1] != m.shape[2]
        or m.shape[1] < 2
    ):
      raise ValueError(
          f'maps_by_loss[{loss!r}] must be [n={n}, G, G] (one '
          f'G x G reward map per vertex), got shape {m.shape}'
      )
    if not np.any(np.isfinite(m)):
      raise ValueError(f'maps_by_loss[{loss!r}] has no finite reward')
    out[loss] = m
  return out


def _check_renders(renders_by_loss, losses):
  out = {}
  for loss, items in dict(renders_by_loss).items():
    if loss not in losses:
      raise ValueError(f'renders_by_loss has loss {loss!r} without a map')
    items = list(items)
    if not items:
      raise ValueError(f'renders_by_loss[{loss!r}] is empty')
    rows = []
    for j, item in enumerate(items):
      if len(item) != 4:
        raise ValueError(
            f'renders_by_loss[{loss!r}][{j}] must be (label, '
            f'(x, y), reward, image), got {len(item)} fields'
        )
      label, xy, reward, image = item
      xy = np.asarray(xy, dtype=np.float64)
      if xy.shape != (2,):
        raise ValueError(
            f'renders_by_loss[{loss!r}][{j}] position must be '
            f'(x, y), got shape {xy.shape}'
        )
      rows.append(
          (
              str(label),
              xy,
              float(reward),
              F.as_rgb(image, f'renders_by_loss[{loss!r}][{j}] image'),
          )
      )
    out[loss] = rows
  return out


def _position_color(label, j):
  return POSITION_COLORS.get(label, _POSITION_FALLBACK[j % 4])


def corner_plots(
    maps_by_loss: Mapping[str, np.ndarray],
    jh_image,
    base_action,
    path,
    axes=None,
    renders_by_loss: Optional[Mapping[str, Sequence]] = None,
    render_vertex: Optional[int] = None,
    title: Optional[str] = None,
) -> str:
  """Fig. 3: per loss, the reward of each vertex at every JH position.

  Args:
    maps_by_loss: {loss: [n, G, G]}: map[k, j, i] is the reward when vertex k
      of ``base_action`` moves to x = (i + 0.5) / G, y = (j + 0.5) / G (row =
      y like the JH) and the other vertices stay; NaN = not evaluated.
    jh_image: [B, B] JH image in [0, 1] (or a JointHistogram), drawn in grey.
    base_action: [n, 2] the expert polygon (x, y) in JH units.
    path: the PNG to write.
    axes: optional JHAxes to plot in HU and HU/mm.
    renders_by_loss: optional {loss: [(label, (x, y), reward, image)]}:
      renderings with vertex ``render_vertex`` moved to (x, y) (e.g. 'low',
      'medium', 'high' reward); drawn as a row under the loss's maps and
      marked on that vertex's map.
    render_vertex: the vertex of the renderings (default: the 4th, k = 3, or
      the last one of smaller polygons).
  Returns:
    path.
  """
  base = F.check_polygon(base_action, 'base_action')
  n = len(base)
  maps = _check_maps(maps_by_loss, n)
  image, axes = F.unpack_jh(jh_image, axes)
  renders = _check_renders(renders_by_loss or {}, maps)
  kv = min(3, n - 1) if render_vertex is None else int(render_vertex)
  if not 0 <= kv < n:
    raise ValueError(f'render_vertex must be in [0, {n}), got {kv}')
  heights = [1.0 + (0.8 if loss in renders else 0.0) for loss in maps]
  fig = F.new_figure(2.75 * n + 1.1, 2.95 * sum(heights) + 0.4)
  subs = np.atleast_1d(
      fig.subfigures(len(maps), 1, height_ratios=heights, hspace=0.02)
  )
  for li, (sub, (loss, m)) in enumerate(zip(subs, maps.items())):
    color = F.loss_color(loss, li)
    if loss in renders:
      top, bottom = sub.subfigures(2, 1, height_ratios=[1.0, 0.8])
    else:
      top, bottom = sub, None
    axs = top.subplots(1, n, squeeze=False)[0]
    vmin, vmax = float(np.nanmin(m)), float(np.nanmax(m))
    for k, ax in enumerate(axs):
      F.draw_jh_image(
          ax, image, axes, cmap='gray', ylabel=(k == 0), xlabel=True
      )
      im = ax.imshow(
          m[k],
          origin='lower',
          extent=F.jh_extent(axes),
          aspect='equal' if axes is None else 'auto',
          cmap=HEAT_CMAP,
          vmin=vmin,
          vmax=vmax,
          alpha=HEAT_ALPHA,
          interpolation='bilinear',
      )
      pts = _draw_polygon(ax, base, axes)
      ax.scatter(
          pts[:, 0],
          pts[:, 1],
          s=14,
          color=POLY_COLOR,
          zorder=4,
          edgecolors='black',
          linewidths=0.5,
      )
      ax.scatter(
          pts[k, 0],
          pts[k, 1],
          s=70,
          color=VERTEX_COLOR,
          zorder=5,
          edgecolors='white',
          linewidths=1.2,
          marker='o',
      )
      if np.any(np.isfinite(m[k])):
        j, i = np.unravel_index(np.nanargmax(m[k]), m[k].shape)
        g = m.shape[-1]
        best = F.to_plot(np.array([(i + 0.5) / g, (j + 0.5) / g]), axes)
        ax.scatter(
            best[0],
            best[1],
            s=70,
            marker='x',
            color='white',
            linewidths=1.8,
            zorder=5,
        )
      ax.set_title(
          f'vertex {k + 1}'
          + ('  (renderings below)' if loss in renders and k == kv else ''),
          fontsize=F.LABEL_SIZE,
      )
      if loss in renders and k == kv:
        for j, (label, xy, _, _) in enumerate(renders[loss]):
          p = F.to_plot(xy, axes)
          ax.scatter(
              p[0],
              p[1],
              s=60,
              marker='s',
              zorder=6,
              facecolor='none',
              edgecolors=_position_color(label, j),
              linewidths=2.0,
          )
    cb = top.colorbar(im, ax=list(axs), shrink=0.9, pad=0.01, aspect=20)
    cb.set_label(r'reward $r_\psi$', fontsize=F.LABEL_SIZE)
    cb.ax.tick_params(labelsize=F.SMALL_SIZE)
    top.suptitle(
        f'{F.panel_letter(li)} {F.loss_label(loss)}:  '
        f'● probed vertex (expert position)   × its best position',
        fontsize=F.TITLE_SIZE,
        color=color,
    )
    if bottom is not None:
      items = renders[loss]
      raxs = bottom.subplots(1, len(items), squeeze=False)[0]
      for j, (ax, (label, xy, reward, img)) in enumerate(zip(raxs, items)):
        ax.imshow(img, interpolation='lanczos')
        ax.set_xticks([])
        ax.set_yticks([])
        pc = _position_color(label, j)
        for spine in ax.spines.values():
          spine.set_edgecolor(pc)
          spine.set_linewidth(3.0)
        ax.set_title(f'{label}: r = {reward:.2f}', fontsize=F.LABEL_SIZE)
      bottom.suptitle(
          f'vertex {kv + 1} moved to the positions marked □ on ' f'its map',
          fontsize=F.LABEL_SIZE,
      )
  fig.suptitle(
      title
      or 'Reward of each vertex at every JH position '
      '(other vertices at the expert polygon)',
      fontsize=F.TITLE_SIZE + 1,
  )
  return F.save_figure(fig, path)


def gradient_arrows(
    jh_image,
    action,
    grad,
    path,
    axes=None,
    ascent_actions=None,
    title: Optional[str] = None,
    max_arrow: float = 0.15,
    min_fraction: float = 0.25,
    polygon_label: str = 'expert polygon',
) -> str:
  """dr/dvertices at a polygon (e.g. the expert's) as arrows on the JH.

  Args:
    jh_image: [B, B] JH image in [0, 1] (or a JointHistogram).
    action: [n, 2] the polygon (x, y) in JH units.
    grad: [n, 2] dr/d(x, y) of each vertex, in reward per JH unit.
    path: the PNG to write.
    axes: optional JHAxes to plot in HU and HU/mm (arrows keep their JH-unit
      direction, stretched with the plot).
    ascent_actions: optional [m, n, 2] (or one [n, 2]) polygons found by
      reward ascent, drawn as thin lines.
    max_arrow: the longest arrow's length as a fraction of the JH width; the
      others are scaled by the same factor (relative lengths are kept) and
      each vertex is labelled with its |dr/dv|.
    min_fraction: arrows shorter than this fraction of the longest are drawn
      at that length (only zero gradients are drawn without arrow).
    polygon_label: the legend entry of ``action``.
  """
  poly = F.check_polygon(action, 'action')
  g = np.asarray(grad, dtype=np.float64)
  if g.shape != poly.shape:
    raise ValueError(
        f'grad must have the shape of action {poly.shape}, got ' f'{g.shape}'
    )
  if not np.all(np.isfinite(g)):
    raise ValueError('grad has non-finite values')
  ascent = None
  if ascent_actions is not None:
    ascent = np.asarray(ascent_actions, dtype=np.float64)
    if ascent.ndim == 2:
      ascent = ascent[None]
    if ascent.ndim != 3 or ascent.shape[2] != 2 or ascent.shape[1] < 3:
      raise ValueError(
          f'ascent_actions must be [m, n, 2], got shape ' f'{ascent.shape}'
      )
  image, axes = F.unpack_jh(jh_image, axes)
  fig = F.new_figure(6.6, 6.0)
  ax = fig.add_subplot(1, 1, 1)
  im = F.draw_jh_image(ax, image, axes, cmap='magma')
  cb = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.01)
  cb.set_label('JH (log counts, normalised)', fontsize=F.SMALL_SIZE)
  cb.ax.tick_params(labelsize=F.SMALL_SIZE)
  if ascent is not None:
    for a_i, a in enumerate(ascent):
      _draw_polygon(
          ax,
          a,
          axes,
          color='#00e5ff',
          lw=0.9,
          alpha=0.8,
          label=(
              f'reward-ascent polygons ({len(ascent)})' if a_i == 0 else None
          ),
          zorder=3,
      )
  pts = _draw_polygon(
      ax, poly, axes, color='white', lw=1.8, label=polygon_label, zorder=4
  )
  ax.scatter(
      pts[:, 0],
      pts[:, 1],
      s=22,
      color='white',
      zorder=5,
      edgecolors='black',
      linewidths=0.6,
  )
  norms = np.linalg.norm(g, axis=1)
  gmax = float(norms.max())
  # Lengths proportional to |dr/dv|, floored at min_fraction of the longest
  # so that every direction stays visible; the labels give exact values.
  shown = np.where(norms > 0, np.maximum(norms, min_fraction * gmax), 0.0)
  unit = g / np.maximum(norms, 1e-30)[:, None]
  disp = unit * (shown * (max_arrow / gmax if gmax > 0 else 0.0))[:, None]
  sx, sy = (
      (1.0, 1.0)
      if axes is None
      else (float(axes.hu_max - axes.hu_min), float(axes.grad_max))
  )
  ax.quiver(
      pts[:, 0],
      pts[:, 1],
      disp[:, 0] * sx,
      disp[:, 1] * sy,
      angles='xy',
      scale_units='xy',
      scale=1,
      color='#7fff00',
      width=0.007,
      headwidth=3.5,
      headlength=4.5,
      zorder=6,
      label=r'$\partial r / \partial v_k$ (ascent direction)',
  )
  for k, (p, v, u) in enumerate(zip(pts, norms, unit)):
    off = -u * 14 if v > 0 else np.array([8.0, -8.0])  # opposite the arrow
    ax.annotate(
        f'v{k + 1}: {v:.2g}',
        p,
        textcoords='offset points',
        xytext=tuple(off),
        fontsize=F.SMALL_SIZE,
        color='white',
        ha='left' if off[0] >= 0 else 'right',
        va='bottom' if off[1] >= 0 else 'top',
        zorder=7,
        bbox=dict(boxstyle='round,pad=0.15', fc='black', alpha=0.6, lw=0),
        annotation_clip=False,
    )
  x0, x1, y0, y1 = F.jh_extent(axes)
  ax.set_xlim(x0, x1)
  ax.set_ylim(y0, y1)
  ax.legend(loc='upper right', fontsize=F.SMALL_SIZE, framealpha=0.85)
  ax.set_title(
      (title or 'Reward gradient at the expert polygon')
      + f'\narrow length ∝ |dr/dv| (min {min_fraction:.0%} of longest)'
      f'\nlongest = {max_arrow:.2g} JH width ↔ |dr/dv| = {gmax:.3g} '
      f'per JH unit',
      fontsize=F.LABEL_SIZE,
  )
  return F.save_figure(fig, path)
