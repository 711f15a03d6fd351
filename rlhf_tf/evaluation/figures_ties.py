"""The "ties are closer" figure: |r_left - r_right| of tied vs untied pairs.

One panel per loss. The rewards of different losses have different scales,
so |d| is divided by the median |d| of the loss's untied pairs: the x axis
is in units of "a typical untied pair", and the dashed line at 1 is that
median. Each panel shows the empirical CDFs of tied and untied pairs; the
tied curve at x = 1 is the share of tied pairs below the untied median
(tie_metrics.ties_closer, 0.5 if the model ignored ties, 1 if every tie is
closer), printed with the AUC P(|d_tie| < |d_untied|).
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from rlhf_tf.evaluation import figures_style as style
from rlhf_tf.evaluation import tie_metrics


def _ecdf(ax, x: np.ndarray, **kwargs):
  x = np.sort(x)
  y = np.arange(1, x.size + 1) / x.size
  ax.step(
      np.concatenate([[0.0], x]),
      np.concatenate([[0.0], y]),
      where='post',
      **kwargs,
  )


def ties_closer(
    delta_by_loss: Mapping[str, np.ndarray],
    target: np.ndarray,
    path,
    title: Optional[str] = None,
) -> str:
  """Writes the figure (PNG) and returns its path.

  Args:
    delta_by_loss: {loss: [P] r_left - r_right} of the same held-out pairs.
    target: [P] P(left preferred) of those pairs, 0.5 = tie.
    path: the PNG to write.
  """
  style.check_losses(delta_by_loss, 'delta_by_loss')
  t = np.asarray(target, np.float64)
  tie = t == 0.5
  if not tie.any() or tie.all():
    raise ValueError(
        f'the ties-closer figure needs tied and untied pairs, '
        f'got {int(tie.sum())} ties of {t.size}'
    )
  n = len(delta_by_loss)
  fig = style.new_figure(3.9 * n, 3.6)
  axes = fig.subplots(1, n, squeeze=False)[0]
  for i, (loss, delta) in enumerate(delta_by_loss.items()):
    d = style.rewards_1d(delta, f'delta_by_loss[{loss!r}]')
    if d.shape != t.shape:
      raise ValueError(
          f'delta_by_loss[{loss!r}] has {d.size} pairs, target ' f'{t.size}'
      )
    stats = tie_metrics.ties_closer(d, t)
    scale = stats['median_untied'] if stats['median_untied'] > 0 else 1.0
    a = np.abs(d) / scale
    ax = axes[i]
    color = style.loss_color(loss, i)
    _ecdf(
        ax,
        a[~tie],
        color='#7f7f7f',
        lw=1.6,
        label=f'untied pairs ({int((~tie).sum())})',
    )
    _ecdf(
        ax, a[tie], color=color, lw=2.0, label=f'tied pairs ({int(tie.sum())})'
    )
    ax.axvline(1.0, color='black', ls='--', lw=0.9)
    ax.axhline(stats['share_below_median'], color=color, ls=':', lw=0.9)
    ax.set_xlim(0.0, max(3.0, float(np.quantile(a, 0.95))))
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(
        r'$|r_a - r_b|$ / median over untied pairs', fontsize=style.LABEL_SIZE
    )
    if i == 0:
      ax.set_ylabel(
          'share of pairs with smaller value', fontsize=style.LABEL_SIZE
      )
    ax.set_title(
        f'{style.panel_letter(i)} {style.loss_label(loss)}',
        fontsize=style.TITLE_SIZE,
    )
    ax.text(
        0.97,
        0.05,
        f'ties below untied median: '
        f'{style.format_stat(stats["share_below_median"])}\n'
        r'AUC $P(|d_\mathrm{tie}| < |d_\mathrm{untied}|)$: '
        f'{style.format_stat(stats["auc"])}',
        transform=ax.transAxes,
        ha='right',
        va='bottom',
        fontsize=style.SMALL_SIZE,
        bbox=dict(facecolor='white', edgecolor='#cccccc', alpha=0.9),
    )
    ax.legend(loc='center right', fontsize=style.SMALL_SIZE, frameon=False)
    ax.grid(alpha=0.3)
  fig.suptitle(
      title
      or 'Ties are closer: held-out reward gaps of tied vs ' 'untied pairs',
      fontsize=style.TITLE_SIZE,
  )
  return style.save_figure(fig, path)
