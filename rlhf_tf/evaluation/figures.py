"""Figures of what the reward model learned (paper Figs. 2 and 4).

Every function takes plain numpy arrays + labels, writes one PNG and returns
its path. Figures are built with the object API (``matplotlib.figure.Figure``,
no pyplot state) and rendered by Agg, so they may be drawn from threads.

Losses are keyed ``'ce'`` (L_C, Eq. 4: cross-entropy, ties kept as mu = 1/2)
and ``'nll'`` (L_L, Eq. 5: NLL, ties dropped); each has one colour used in
every figure (``loss_color``). Any other key is drawn with its own name.

The JH probing figures (Fig. 3 corner plots, reward-gradient arrows) live in
``figures_probing``, the reliability diagrams in ``figures_calibration``, the
shared style (loss colours, the JH image) in ``figures_style``.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib
from matplotlib import cm
from matplotlib import colors as mcolors
import numpy as np

from rlhf_tf.evaluation import metrics
from rlhf_tf.evaluation.figures_style import (
    as_rgb,
    check_losses,
    format_stat,
    INSPECTOR_CMAP,
    LABEL_SIZE,
    loss_color,
    loss_label,
    new_figure,
    panel_letter,
    rewards_1d,
    save_figure,
    SMALL_SIZE,
    TITLE_SIZE,
)

# ------------------------------------------------------ Fig. 2 histograms


# Labels of metrics.sharpness keys; when a stats dict has any of them only
# these are listed (in this order), else every entry is.
SHARPNESS_LABELS = {
    'expert_percentile': 'expert percentile',
    'expert_z': 'expert z-score',
    'normalised_entropy': 'normalised entropy',
    'skewness': 'skewness',
}


def _stat_lines(stats: Mapping) -> list:
  stats = dict(stats)
  if any(k in stats for k in SHARPNESS_LABELS):
    return [
        f'{label} = {format_stat(stats[k])}'
        for k, label in SHARPNESS_LABELS.items()
        if k in stats
    ]
  return [f'{k} = {format_stat(v)}' for k, v in stats.items()]


def _headroom(ax, log: bool, floor: float = 0.5):
  """Raises the y limit so the legend sits above the bars."""
  lo, hi = ax.get_ylim()
  if log:
    lo = max(lo, floor)
    ax.set_ylim(lo, hi * (hi / lo) ** 0.4)
  else:
    ax.set_ylim(0, hi * 1.45)


def reward_histograms(
    rewards_by_loss: Mapping[str, np.ndarray],
    path,
    expert_rewards_by_loss: Optional[Mapping] = None,
    bins: int = 60,
    stats_by_loss: Optional[Mapping] = None,
    log_counts: bool = True,
    compare: bool = True,
    title: Optional[str] = None,
) -> str:
  """Fig. 2: the reward distribution of random actions, one panel per loss.

  Args:
    rewards_by_loss: {loss: [N]} rewards of N (e.g. 20,000) uniformly random
      actions on one scene, e.g. {'ce': ..., 'nll': ...}.
    path: the PNG to write.
    expert_rewards_by_loss: optional {loss: [M] or scalar} rewards of the
      expert (pre-defined) actions; their mean is drawn as a dashed line with
      the share of random actions above it.
    bins: histogram bins per panel.
    stats_by_loss: optional {loss: {name: value}} listed in each panel's
      legend; for a ``metrics.sharpness`` dict only its scale-free numbers
      (SHARPNESS_LABELS) are listed.
    log_counts: counts on a log axis (shows the decline towards high rewards).
    compare: add a last panel with all losses' standardised rewards
      (r - mean) / std overlaid, to compare the shapes (rewards of a
      Bradley-Terry model are only defined up to a shift).
  Returns:
    path.
  """
  check_losses(rewards_by_loss, 'rewards_by_loss')
  if int(bins) != bins or bins < 2:
    raise ValueError(f'bins must be an integer >= 2, got {bins}')
  rewards = {
      k: rewards_1d(v, f'rewards_by_loss[{k!r}]')
      for k, v in rewards_by_loss.items()
  }
  expert = dict(expert_rewards_by_loss or {})
  stats = dict(stats_by_loss or {})
  unknown = (set(expert) | set(stats)) - set(rewards)
  if unknown:
    raise ValueError(
        f'expert rewards / stats for losses without rewards: '
        f'{sorted(unknown)}'
    )
  with_compare = compare and len(rewards) > 1
  ncols = len(rewards) + int(with_compare)
  fig = new_figure(4.4 * ncols, 3.9)
  axs = np.atleast_1d(fig.subplots(1, ncols, squeeze=False)[0])
  for i, (loss, r) in enumerate(rewards.items()):
    ax, color = axs[i], loss_color(loss, i)
    ax.hist(
        r,
        bins=int(bins),
        histtype='stepfilled',
        color=color,
        alpha=0.35,
        log=log_counts,
    )
    ax.hist(
        r,
        bins=int(bins),
        histtype='step',
        color=color,
        lw=1.5,
        log=log_counts,
        label=f'random actions (N = {r.size:,})',
    )
    if loss in expert:
      e = rewards_1d(expert[loss], f'expert_rewards_by_loss[{loss!r}]')
      share = float(np.mean(r > e.mean()))
      ax.axvline(
          e.mean(),
          color='black',
          ls='--',
          lw=1.3,
          label=f'mean expert reward {e.mean():.2f}\n'
          f'({100 * share:.2g}% of random above it)',
      )
    for line in _stat_lines(stats.get(loss, {})):
      ax.plot([], [], ' ', label=line)
    ax.set_title(f'{panel_letter(i)} {loss_label(loss)}', fontsize=TITLE_SIZE)
    ax.set_xlabel(r'reward $r_\psi(s, a)$', fontsize=LABEL_SIZE)
    ax.set_ylabel(
        'number of actions' + (' (log)' if log_counts else ''),
        fontsize=LABEL_SIZE,
    )
    ax.grid(alpha=0.25, which='major')
    ax.tick_params(labelsize=SMALL_SIZE)
  top = max(a.get_ylim()[1] for a in axs[: len(rewards)])
  for a in axs[: len(rewards)]:  # the same count axis for all losses
    a.set_ylim(top=top)
    _headroom(a, log_counts)
    a.legend(fontsize=SMALL_SIZE, loc='upper right', framealpha=0.95)
  if with_compare:
    ax = axs[-1]
    z_all = {
        k: (r - r.mean()) / max(r.std(), 1e-12) for k, r in rewards.items()
    }
    lo = min(z.min() for z in z_all.values())
    hi = max(z.max() for z in z_all.values())
    edges = np.linspace(lo, hi, int(bins) + 1)
    for i, (loss, z) in enumerate(z_all.items()):
      ax.hist(
          z,
          bins=edges,
          histtype='step',
          color=loss_color(loss, i),
          lw=1.6,
          density=True,
          log=log_counts,
          label=loss_label(loss),
      )
    ax.set_title(
        f'{panel_letter(len(rewards))} shapes compared', fontsize=TITLE_SIZE
    )
    ax.set_xlabel('standardised reward (r - mean) / std', fontsize=LABEL_SIZE)
    ax.set_ylabel(
        'density' + (' (log)' if log_counts else ''), fontsize=LABEL_SIZE
    )
    _headroom(ax, log_counts, floor=0.0)
    ax.legend(fontsize=SMALL_SIZE, loc='upper right')
    ax.grid(alpha=0.25)
    ax.tick_params(labelsize=SMALL_SIZE)
  sizes = {r.size for r in rewards.values()}
  default = (
      'Rewards of %s uniformly random actions' % f'{sizes.pop():,}'
      if len(sizes) == 1
      else 'Rewards of uniformly random actions'
  )
  fig.suptitle(title or default, fontsize=TITLE_SIZE + 1)
  return save_figure(fig, path)


# --------------------------------------------------- Fig. 4 evaluation grid


def _check_grid(images, rewards, gold_scores, labels, grid):
  rows, cols = grid
  n = rows * cols
  images = list(images) if not isinstance(images, np.ndarray) else images
  if len(images) != n:
    raise ValueError(
        f'the {rows}x{cols} grid needs {n} images, got ' f'{len(images)}'
    )
  imgs = [as_rgb(im, f'images[{i}]') for i, im in enumerate(images)]
  r = rewards_1d(rewards, 'rewards')
  g = rewards_1d(gold_scores, 'gold_scores')
  if len(r) != n or len(g) != n:
    raise ValueError(
        f'need {n} rewards and gold scores (one per image), got '
        f'{len(r)} and {len(g)}'
    )
  if labels is not None and len(labels) != n:
    raise ValueError(f'need {n} labels, got {len(labels)}')
  return imgs, r, g


def _draw_grid(sub, imgs, r, g, labels, title, grid, color='black'):
  """One block: renderings sorted by reward (highest first) + captions."""
  rows, cols = grid
  order = np.argsort(-r, kind='stable')
  cmap = matplotlib.colormaps[INSPECTOR_CMAP]
  axs = sub.subplots(rows, cols, squeeze=False)
  for rank, (ax, i) in enumerate(zip(axs.ravel(), order)):
    ax.imshow(imgs[i], interpolation='lanczos')
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
      spine.set_edgecolor(cmap(float(np.clip(g[i], 0, 1))))
      spine.set_linewidth(3.0)
    caption = f'r = {r[i]:.2f} | inspector {g[i]:.2f}'
    if labels is not None:
      caption = f'{labels[i]}\n' + caption
    ax.set_xlabel(caption, fontsize=SMALL_SIZE, labelpad=2)
    ax.text(
        0.03,
        0.97,
        f'#{rank + 1}',
        transform=ax.transAxes,
        ha='left',
        va='top',
        color='white',
        fontsize=SMALL_SIZE,
        fontweight='bold',
        bbox=dict(boxstyle='round,pad=0.2', fc='black', alpha=0.55, lw=0),
    )
  rho = metrics.rank_correlations(r, g)['spearman_rho']
  sub.suptitle(
      f'{title}\nsorted by reward, highest first '
      f'(Spearman ρ reward vs inspector = {rho:.2f})',
      fontsize=TITLE_SIZE,
      color=color,
  )
  sm = cm.ScalarMappable(mcolors.Normalize(0, 1), cmap)
  cb = sub.colorbar(sm, ax=axs, shrink=0.6, pad=0.01, aspect=30)
  cb.set_label('inspector score (frame colour)', fontsize=SMALL_SIZE)
  cb.ax.tick_params(labelsize=SMALL_SIZE)


def evaluation_grid(
    images,
    rewards,
    gold_scores,
    path,
    title: str,
    labels: Optional[Sequence[str]] = None,
    grid=(3, 4),
) -> str:
  """Fig. 4: the evaluation TFs' renderings sorted by reward, highest first.

  Args:
    images: 12 renderings [12, H, W, 3|4] (float in [0, 1] or uint8), or a
      list of such images (sizes may differ).
    rewards: [12] the reward model's rewards of the 12 evaluation TFs.
    gold_scores: [12] the simulated inspector's quality in [0, 1]; it is
      written under each image and colours the frame (red 0 .. green 1).
    path: the PNG to write.
    title: e.g. loss_label('ce').
    labels: optional [12] names of the TFs, written above the caption.
    grid: (rows, cols); len(images) must equal rows * cols.
  """
  imgs, r, g = _check_grid(images, rewards, gold_scores, labels, grid)
  rows, cols = grid
  fig = new_figure(2.35 * cols + 0.8, 2.55 * rows + 0.7)
  _draw_grid(fig, imgs, r, g, labels, title, grid)
  return save_figure(fig, path)


def evaluation_grids(
    images,
    rewards_by_loss: Mapping[str, np.ndarray],
    gold_scores,
    path,
    labels=None,
    grid=(3, 4),
    title: Optional[str] = None,
) -> str:
  """Fig. 4 (a), (b): one evaluation_grid block per loss, side by side.

  Args:
    images: the 12 renderings [12, H, W, 3|4], shared by all losses.
    rewards_by_loss: {loss: [12]} each loss's rewards (sorts its block).
    gold_scores: [12] the inspector's quality in [0, 1].
  """
  check_losses(rewards_by_loss, 'rewards_by_loss')
  checked = {
      k: _check_grid(images, v, gold_scores, labels, grid)
      for k, v in rewards_by_loss.items()
  }
  rows, cols = grid
  n = len(checked)
  fig = new_figure((2.35 * cols + 0.8) * n, 2.55 * rows + 1.0)
  subs = np.atleast_1d(fig.subfigures(1, n, wspace=0.03))
  for i, (sub, (loss, (imgs, r, g))) in enumerate(zip(subs, checked.items())):
    _draw_grid(
        sub,
        imgs,
        r,
        g,
        labels,
        f'{panel_letter(i)} {loss_label(loss)}',
        grid,
        color=loss_color(loss, i),
    )
  if title:
    fig.suptitle(title, fontsize=TITLE_SIZE + 1)
  return save_figure(fig, path)


# --------------------------------------------------------------- overview


def overview(
    images: Sequence,
    titles: Sequence[str],
    path,
    suptitle: Optional[str] = None,
    ncols: Optional[int] = None,
    panel_size: float = 2.8,
) -> str:
  """A strip (or, with ``ncols``, a grid) of renderings with titles.

  Args:
    images: list of [H, W, 3|4] renderings (float in [0, 1] or uint8).
    titles: one title per image.
  """
  images = list(images)
  titles = list(titles)
  if not images:
    raise ValueError('overview needs at least one image')
  if len(titles) != len(images):
    raise ValueError(
        f'need one title per image: {len(images)} images, '
        f'{len(titles)} titles'
    )
  imgs = [as_rgb(im, f'images[{i}]') for i, im in enumerate(images)]
  ncols = len(imgs) if ncols is None else max(1, min(int(ncols), len(imgs)))
  nrows = -(-len(imgs) // ncols)
  aspect = np.mean([im.shape[0] / im.shape[1] for im in imgs])
  fig = new_figure(
      panel_size * ncols,
      panel_size * aspect * nrows + 0.35 * nrows + (0.4 if suptitle else 0),
  )
  axs = fig.subplots(nrows, ncols, squeeze=False).ravel()
  for ax in axs:
    ax.axis('off')
  for ax, im, t in zip(axs, imgs, titles):
    ax.imshow(im, interpolation='lanczos')
    ax.set_title(str(t), fontsize=LABEL_SIZE)
  if suptitle:
    fig.suptitle(suptitle, fontsize=TITLE_SIZE + 1)
  return save_figure(fig, path)
