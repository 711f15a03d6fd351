"""Figure of leave-one-scene-out evaluation (experiments/multiscene.py)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from rlhf_tf.evaluation import figures_style as style

# (key in a row, label, target line of the issue, colour)
HELD_OUT_NUMBERS = (
    ('decisive_accuracy', 'decisive-pair accuracy', 0.95, '#1f77b4'),
    (
        'spearman_rho',
        'Spearman ρ vs inspector\n(unseen random actions)',
        0.85,
        '#e66101',
    ),
    (
        'ascent_relative',
        'reward ascent: inspector score\n/ expert score',
        0.9,
        '#1b9e77',
    ),
)


def held_out_figure(
    rows: Sequence[Mapping],
    path: str,
    title: str = 'reward on a scene it never saw',
) -> str:
  """One panel per number, one bar per held-out scene (and the mean of the
  phantom folds), with the target as a dashed line.

  Args:
    rows: per held-out scene: 'scene_id', 'train_scenes' (count) and the
      keys of HELD_OUT_NUMBERS.
    path: the PNG to write.
  """
  if not rows:
    raise ValueError('no held-out scene to draw')
  names = [str(r['scene_id']) for r in rows]
  fig = style.new_figure(4.2 * len(HELD_OUT_NUMBERS), 0.9 + 0.32 * len(rows))
  axes = fig.subplots(1, len(HELD_OUT_NUMBERS), sharey=True)
  y = np.arange(len(rows))
  for i, (ax, (key, label, target, colour)) in enumerate(
      zip(axes, HELD_OUT_NUMBERS)
  ):
    values = np.array([float(r.get(key, np.nan)) for r in rows])
    ax.barh(y, np.nan_to_num(values), color=colour, alpha=0.85)
    for yi, v in zip(y, values):
      ax.text(
          min(max(np.nan_to_num(v), 0.0), 1.05) + 0.01,
          yi,
          style.format_stat(v),
          va='center',
          fontsize=style.SMALL_SIZE,
      )
    ax.axvline(target, color='k', ls='--', lw=1)
    low = float(np.nanmin(values, initial=0.0))
    ax.set_xlim(low - 0.3 if low < 0 else 0.0, 1.25)
    ax.set_title(f'{style.panel_letter(i)} {label}', fontsize=style.TITLE_SIZE)
    ax.tick_params(labelsize=style.SMALL_SIZE)
  axes[0].set_yticks(y)
  axes[0].set_yticklabels(
      [
          f'{n} ({r.get("train_scenes", "?")} train)'
          for n, r in zip(names, rows)
      ],
      fontsize=style.SMALL_SIZE,
  )
  axes[0].invert_yaxis()
  fig.suptitle(title, fontsize=style.TITLE_SIZE)
  return style.save_figure(fig, path)


def learning_curve_figure(rows: Sequence[Mapping], path: str) -> str:
  """Spearman rho on unseen actions vs number of labels, per protocol:
  mean over seeds with the seeds' range as a band.

  Args:
    rows: per budget: 'labels', 'uniform_rho' and / or 'two_stage_rho'
      (lists, one value per seed); a protocol not run is not drawn.
  """
  if not rows:
    raise ValueError('no budget to draw')
  labels = np.array([r['labels'] for r in rows], float)
  fig = style.new_figure(5.5, 4.0)
  ax = fig.subplots()
  for key, name, colour in (
      ('uniform_rho', 'uniform pairs, paper D', '#7f7f7f'),
      (
          'two_stage_rho',
          'two-stage (high reward + ' 'ensemble disagreement)',
          '#1b9e77',
      ),
  ):
    if key not in rows[0]:
      continue
    values = np.array([r[key] for r in rows], float)
    ax.plot(labels, values.mean(axis=1), 'o-', color=colour, label=name)
    ax.fill_between(
        labels, values.min(axis=1), values.max(axis=1), color=colour, alpha=0.2
    )
  ax.axhline(0.9, color='k', ls='--', lw=1)
  ax.set_xscale('log')
  ax.minorticks_off()
  ax.set_xticks(labels)
  ax.set_xticklabels([f'{int(x):,}' for x in labels])
  ax.set_xlabel('labels (pairs judged)', fontsize=style.LABEL_SIZE)
  ax.set_ylabel(
      'Spearman ρ vs inspector, unseen actions', fontsize=style.LABEL_SIZE
  )
  ax.legend(fontsize=style.SMALL_SIZE, loc='lower right')
  seeds = len(rows[0].get('uniform_rho') or rows[0]['two_stage_rho'])
  ax.set_title(
      'fewer labels for the same reward (mean and range of ' f'{seeds} seeds)',
      fontsize=style.TITLE_SIZE,
  )
  return style.save_figure(fig, path)
