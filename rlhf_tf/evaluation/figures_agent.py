"""Figures of the PPO agent: reward over-optimisation (Gao et al. 2022).

The agent's TFs next to the expert's and a random one are drawn by
``figures.overview``.
"""

from __future__ import annotations

from typing import Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np


def overoptimisation(series: Mapping[str, np.ndarray], path: str) -> str:
  """Gold score and proxy reward vs sqrt(KL to the reference) (Gao et al.
  2022) to a PNG at ``path``; the two have their own y axes.

  Args:
    series: ``agent.ppo.train_with_monitor``'s monitor: 'sqrt_kl',
      'gold_score', 'proxy_reward' [T] and optionally 'gold_score_mode',
      'proxy_reward_mode' [T] (the policy's mode instead of samples).
    path: the PNG to write.
  """
  x = np.asarray(series['sqrt_kl'])
  fig = Figure(figsize=(7.0, 4.5), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  ax.plot(
      x, series['gold_score'], 'o-', color='tab:red', label='gold (samples)'
  )
  if 'gold_score_mode' in series:
    ax.plot(
        x,
        series['gold_score_mode'],
        's--',
        color='tab:red',
        alpha=0.6,
        label='gold (mode)',
    )
  ax.set_xlabel('sqrt(KL(pi || pi_ref)) [sqrt nats]')
  ax.set_ylabel('gold score (inspector)', color='tab:red')
  ax2 = ax.twinx()
  ax2.plot(
      x, series['proxy_reward'], 'o-', color='tab:blue', label='proxy (samples)'
  )
  if 'proxy_reward_mode' in series:
    ax2.plot(
        x,
        series['proxy_reward_mode'],
        's--',
        color='tab:blue',
        alpha=0.6,
        label='proxy (mode)',
    )
  ax2.set_ylabel('proxy reward (reward model)', color='tab:blue')
  lines = ax.get_legend_handles_labels()
  lines2 = ax2.get_legend_handles_labels()
  ax.legend(
      lines[0] + lines2[0],
      lines[1] + lines2[1],
      loc='upper center',
      bbox_to_anchor=(0.5, -0.16),
      ncol=4,
      fontsize='small',
  )
  ax.set_title('Reward over-optimisation (Gao et al. 2022)')
  fig.tight_layout()
  fig.savefig(path)
  return path
