r"""Time the simulated inspector on the default phantom scene.

  .venv/bin/python benchmarks/simulate.py [--image_size=256]

Builds the default phantom scene (128^3, JH 256 bins, view + ray cache), the
action set D (100 actions) and 4,000 pairs, then times: rendering the 100
actions at image_size^2 with their tissue weights (the inspector's criteria
included) and the 4,000 comparisons. Prints JSON. Goal on 2 CPU cores:
renders + comparisons <= 60 s.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from rlhf_tf.data import phantom  # pylint: disable=wrong-import-position
from rlhf_tf.preferences import (
    actions,  # pylint: disable=wrong-import-position
    inspector,  # pylint: disable=wrong-import-position
    scenes,  # pylint: disable=wrong-import-position
)
from rlhf_tf.render import histogram  # pylint: disable=wrong-import-position


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--image_size', type=int, default=256)
  args = parser.parse_args()
  out = {'image_size': args.image_size, 'cpu_count': os.cpu_count()}
  t = time.perf_counter()
  volume = phantom.make_head_phantom(jax.random.key(0), (128, 128, 128))
  render = scenes.default_config()
  render.image_size = args.image_size
  scene = scenes.build_scene(
      'bench', volume, histogram.default_config(), render
  )
  d = actions.build_action_set(jax.random.key(1), scene.experts)
  pairs = actions.sample_pairs(jax.random.key(2), len(d), 4000)
  out['scene_setup_s'] = time.perf_counter() - t
  jax.block_until_ready(scene.render_tissues(d.vertices[0]))  # compile
  t = time.perf_counter()
  crit = []
  for v in d.vertices:
    rgba, w, h = scene.render_tissues(v)
    crit.append(
        inspector.criteria(np.asarray(w), np.asarray(h), np.asarray(rgba))
    )
  out['render_100_actions_s'] = time.perf_counter() - t
  t = time.perf_counter()
  answers = inspector.judge_pairs(None, np.stack(crit), pairs)
  out['compare_4000_pairs_s'] = time.perf_counter() - t
  out['tie_rate'] = inspector.tie_rate(answers)
  out['total_s'] = out['render_100_actions_s'] + out['compare_4000_pairs_s']
  out['goal_total_s<=60'] = out['total_s'] <= 60
  print(
      json.dumps(
          {
              k: round(v, 3) if isinstance(v, float) else v
              for k, v in out.items()
          },
          indent=2,
      )
  )


if __name__ == '__main__':
  main()
