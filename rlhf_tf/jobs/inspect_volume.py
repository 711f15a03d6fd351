"""Job `inspect`: facts, three orthogonal slices and the JH of a volume, and
the tissue groups the simulated inspector judges it by."""

from __future__ import annotations

import json
import os
import time

from absl import logging
import ml_collections

from rlhf_tf.data import sources
from rlhf_tf.evaluation import volume_figures
from rlhf_tf.preferences import tissues
from rlhf_tf.render import histogram


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Loads the volume, writes `inspect.png`, `groups.png` and
  `volume.json`, prints facts."""
  t0 = time.perf_counter()
  logging.info('loading volume (source=%s)', config.volume.source)
  volume = sources.load_volume(config.volume)
  t1 = time.perf_counter()
  logging.info(
      'loaded %s in %.1f s; computing the joint histogram', volume.name, t1 - t0
  )
  jh = histogram.from_config(volume, config.histogram)
  t2 = time.perf_counter()
  facts = volume.describe()
  facts['histogram'] = {
      'bins': jh.bins,
      'hu_window': [jh.axes.hu_min, jh.axes.hu_max],
      'grad_max_hu_per_mm': jh.axes.grad_max,
      'occupied_bins': int((jh.counts > 0).sum()),
  }
  facts['seconds'] = {'load': round(t1 - t0, 3), 'histogram': round(t2 - t1, 3)}
  figure = volume_figures.orthogonal_slices_figure(
      volume, jh, os.path.join(workdir, 'inspect.png')
  )
  groups = tissues.tissue_groups(volume)
  facts['tissue_groups'] = {
      name: int((groups == i).sum()) for i, name in enumerate(tissues.GROUPS)
  }
  groups_figure = volume_figures.tissue_groups_figure(
      volume, groups, tissues.GROUPS, os.path.join(workdir, 'groups.png')
  )
  with open(os.path.join(workdir, 'volume.json'), 'w') as f:
    json.dump(facts, f, indent=2)
  print(json.dumps(facts, indent=2))
  print(f'figures: {figure}, {groups_figure}')
  return facts
