"""Calibration of the preference probability sigma(r_c - r_r): reliability
diagrams of the held-out pairs, one per loss, with their ECE.

Written like ``figures`` (plain numpy in, one PNG out, object API + Agg);
the shared style (loss colours and labels) is ``figures_style``'s.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from rlhf_tf.evaluation.figures_style import (
    check_losses,
    LABEL_SIZE,
    loss_color,
    loss_label,
    new_figure,
    panel_letter,
    save_figure,
    SMALL_SIZE,
    TITLE_SIZE,
)


def _get(d: Mapping, names, loss):
  for n in names:
    if n in d:
      return np.asarray(d[n], dtype=np.float64).ravel()
  raise ValueError(f'bins_by_loss[{loss!r}] needs one of the keys {names}')


def _bin_edges(d: Mapping, conf, count, loss) -> np.ndarray:
  """Bin edges: given ('edges' / 'bin_edges'), or equal-width over [0.5, 1]
  when every filled bin's confidence is >= 0.5, else over [0, 1]."""
  k = len(conf)
  for name in ('edges', 'bin_edges'):
    if name in d:
      e = np.asarray(d[name], dtype=np.float64).ravel()
      if e.shape != (k + 1,) or np.any(np.diff(e) <= 0):
        raise ValueError(
            f'bins_by_loss[{loss!r}][{name!r}] must be {k + 1} '
            f'increasing edges, got {e}'
        )
      return e
  filled = (count > 0) & np.isfinite(conf)
  lo = 0.5 if np.all(conf[filled] >= 0.5 - 1e-9) else 0.0
  return np.linspace(lo, 1.0, k + 1)


def reliability_diagram(
    bins_by_loss: Mapping[str, Mapping],
    path,
    ece_by_loss: Optional[Mapping[str, float]] = None,
    title: Optional[str] = None,
) -> str:
  """Reliability diagrams of the preference probabilities, one per loss.

  Args:
    bins_by_loss: {loss: {'confidence': [K], 'accuracy': [K], 'count': [K]}}
      per-bin mean confidence, accuracy and number of pairs ('conf' / 'acc' /
      'counts' are accepted too; empty bins may hold NaN). Bins are
      equal-width over [0.5, 1] (confidence of the predicted winner) or
      [0, 1] (p(a_1 > a_2)), inferred from the confidences, or given as
      'edges' [K + 1].
    path: the PNG to write.
    ece_by_loss: optional {loss: ECE}; computed from the bins when missing.
  """
  check_losses(bins_by_loss, 'bins_by_loss')
  n = len(bins_by_loss)
  fig = new_figure(4.3 * n, 4.9)
  gs = fig.add_gridspec(2, n, height_ratios=[3.2, 1.0])
  for i, (loss, d) in enumerate(bins_by_loss.items()):
    conf = _get(d, ('confidence', 'conf'), loss)
    acc = _get(d, ('accuracy', 'acc'), loss)
    count = _get(d, ('count', 'counts'), loss)
    if not len(conf) == len(acc) == len(count) or len(conf) == 0:
      raise ValueError(
          f'bins_by_loss[{loss!r}]: confidence, accuracy and '
          f'count must have the same non-zero length, got '
          f'{len(conf)}, {len(acc)}, {len(count)}'
      )
    if np.any(count < 0) or count.sum() <= 0:
      raise ValueError(
          f'bins_by_loss[{loss!r}]: counts must be >= 0 and not ' f'all zero'
      )
    edges = _bin_edges(d, conf, count, loss)
    filled = (count > 0) & np.isfinite(conf) & np.isfinite(acc)
    if ece_by_loss is not None and loss in ece_by_loss:
      ece = float(ece_by_loss[loss])
    else:
      w = count[filled] / count[filled].sum()
      ece = float(np.sum(w * np.abs(acc[filled] - conf[filled])))
    color = loss_color(loss, i)
    ax = fig.add_subplot(gs[0, i])
    lefts, widths = edges[:-1][filled], np.diff(edges)[filled]
    ax.bar(
        lefts,
        acc[filled],
        width=widths,
        align='edge',
        color=color,
        alpha=0.75,
        edgecolor='white',
        lw=0.8,
        label='accuracy',
    )
    ax.bar(
        lefts,
        conf[filled] - acc[filled],
        bottom=acc[filled],
        width=widths,
        align='edge',
        fill=False,
        hatch='///',
        edgecolor='#b2182b',
        lw=0.8,
        label='gap to confidence',
    )
    lo = edges[0]
    if lo < 0.5 and 0.5 in edges and np.all(lefts >= 0.5 - 1e-9):
      lo = 0.5  # confidences of the predicted winner: the lower half is empty
    ax.plot(
        [lo, 1],
        [lo, 1],
        color='black',
        ls='--',
        lw=1.1,
        label='perfect calibration',
    )
    ax.set_xlim(lo, 1)
    ax.set_ylim(min(lo, float(np.nanmin(acc[filled])) - 0.02), 1)
    ax.set_ylabel('accuracy (empirical)', fontsize=LABEL_SIZE)
    ax.set_title(
        f'{panel_letter(i)} {loss_label(loss)}\nECE = {ece:.3f}',
        fontsize=TITLE_SIZE,
    )
    ax.legend(fontsize=SMALL_SIZE, loc='upper left')
    ax.tick_params(labelsize=SMALL_SIZE, labelbottom=False)
    ax.grid(alpha=0.25)
    ax2 = fig.add_subplot(gs[1, i], sharex=ax)
    ax2.bar(
        edges[:-1],
        count,
        width=np.diff(edges),
        align='edge',
        color=color,
        alpha=0.5,
        edgecolor='white',
        lw=0.8,
    )
    ax2.set_yscale(
        'log' if count.max() > 20 * max(count[count > 0].min(), 1) else 'linear'
    )
    ax2.set_ylabel('pairs', fontsize=LABEL_SIZE)
    ax2.set_xlabel(
        'confidence of the predicted winner, max(p, 1 - p)'
        if lo >= 0.5
        else r'predicted probability $p(a_1 \succ a_2)$',
        fontsize=LABEL_SIZE,
    )
    ax2.tick_params(labelsize=SMALL_SIZE)
    ax2.grid(alpha=0.25)
  fig.suptitle(
      title
      or 'Calibration of the preference probability ' r'$\sigma(r_c - r_r)$',
      fontsize=TITLE_SIZE + 1,
  )
  return save_figure(fig, path)
