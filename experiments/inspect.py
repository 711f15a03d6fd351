"""Inspect a CT volume: facts, three orthogonal slices and its joint histogram.

  python launch.py --experiment=experiments/inspect.py --workdir=/tmp/inspect
  python launch.py --experiment=experiments/inspect.py:cranium --workdir=...
  python launch.py --experiment=experiments/inspect.py \
      --experiment.volume.source=dicom --experiment.volume.path=/my/dicom ...

Result: `inspect.png` (slices + JH with axes in HU and HU/mm) and
`volume.json` in the workdir. On the default phantom the JH shows separate
clusters for soft tissue (~40 HU), bone (~300-1800 HU) and enamel (~2500+ HU).
Arg: '' (phantom) | 'cranium' | 'smoke' (a 24^3 phantom, 64 bins).
"""

import ml_collections

from rlhf_tf.data import sources
from rlhf_tf.jobs import experiment_file
from rlhf_tf.render import histogram


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, cranium=False, smoke=False)
  config = ml_collections.ConfigDict()
  config.job = 'inspect'
  config.volume = sources.default_config()
  config.volume.source = 'cranium' if arg.cranium else 'phantom'
  config.histogram = histogram.default_config()
  if arg.smoke:
    config.volume.shape = (24, 24, 24)
    config.histogram.bins = 64
  return config
