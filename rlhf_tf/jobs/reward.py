"""Job `train_reward`: fit r(JH, action) to the store's preferences (sec. 3).

Reads the votes of every scene of the dataset config from the store (human
and simulated alike, ``config.data_source`` filters); when the store has
none and ``config.simulate_if_empty`` is set, runs the simulated inspector
first, so the experiment is self-contained on the built-in phantom. Then
trains every loss x seed (rlhf_tf.reward.train) in <workdir>/reward
(reward.from_store.train_on_store).
"""

from __future__ import annotations

import json

from rlhf_tf.devices import distributed
from rlhf_tf.reward import from_store


def train_reward(config, workdir: str) -> dict:
  summary = from_store.train_on_store(config, workdir)
  if distributed.is_primary():
    print(
        json.dumps(
            {loss: s['final'] for loss, s in summary['selected'].items()},
            indent=2,
        )
    )
  return summary
