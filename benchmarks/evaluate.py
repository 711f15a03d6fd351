"""Benchmark: reward-model probing at paper size on CPU; prints one JSON.

Default reward config (``train.default_config().model``) with random-init
parameters (``init_params``) and a random --bins x --bins JH (default 256):

- random_rewards: 20,000 uniform random actions scored (JH encoded once;
  the paper's Fig. 2). Goal <= 0.5 s.
- corner_maps: the 4 corner maps at --bins^2 pixels (4 x 65,536 actions;
  Fig. 3). Goal <= 3 s.

Both after compilation (compile time reported separately), the median of
--repeats runs, each ending with ``block_until_ready``.

  .venv/bin/python benchmarks/evaluate.py [--bins 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from timing import time_calls  # noqa: E402

from rlhf_tf.evaluation import probing  # noqa: E402
from rlhf_tf.reward import model as model_lib  # noqa: E402
from rlhf_tf.reward import train  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--bins', type=int, default=256)
  ap.add_argument('--num', type=int, default=20000)
  ap.add_argument('--repeats', type=int, default=5)
  ap.add_argument('--corner-chunk', type=int, default=65536)
  args = ap.parse_args()

  config = train.default_config()
  model = model_lib.model_from_config(config.model)
  params = model_lib.init_params(model, jax.random.key(0), args.bins)
  jh = jax.random.uniform(jax.random.key(1), (args.bins, args.bins))
  base = jnp.array([[0.2, 0.1], [0.7, 0.15], [0.75, 0.6], [0.25, 0.5]])

  rand_first, rand_med, rand_runs = time_calls(
      lambda: probing.random_action_rewards(
          model, params, jh, jax.random.key(2), num=args.num
      ),
      args.repeats,
  )
  corner_first, corner_med, corner_runs = time_calls(
      lambda: probing.corner_maps(
          model, params, jh, base, chunk=args.corner_chunk
      ),
      args.repeats,
  )
  print(
      json.dumps(
          {
              'device': str(jax.devices()[0]),
              'cpu_count': os.cpu_count(),
              'bins': args.bins,
              'params': model_lib.count_params(params),
              'random_rewards': {
                  'num_actions': args.num,
                  'median_s': rand_med,
                  'first_call_incl_compile_s': rand_first,
                  'runs_s': rand_runs,
                  'goal_s': 0.5,
                  'meets_goal': rand_med <= 0.5,
              },
              'corner_maps': {
                  'num_actions': 4 * args.bins**2,
                  'chunk': args.corner_chunk,
                  'median_s': corner_med,
                  'first_call_incl_compile_s': corner_first,
                  'runs_s': corner_runs,
                  'goal_s': 3.0,
                  'meets_goal': corner_med <= 3.0,
              },
          },
          indent=2,
      )
  )


if __name__ == '__main__':
  main()
