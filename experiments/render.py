"""Render actions (polygons in the JH) of a CT volume.

  python launch.py --experiment=experiments/render.py --workdir=/tmp/render
  python launch.py --experiment=experiments/render.py:cranium,turntable \
      --workdir=/tmp/render_cranium
  python launch.py --experiment=experiments/render.py \
      --experiment.actions_file=my_actions.json --workdir=...

Writes render_<i>.png, jh_<i>.png (the polygon on the JH in HU and HU/mm)
and, with a turntable, turntable_<i>.gif. Without actions it renders the
scene's built-in expert polygon: bone and teeth, soft tissue and air
transparent. Args (comma-separated): cranium, turntable (12 views),
preintegrated (pre-integrated classification and structure-tensor shading:
no wood-grain rings, the renderer of README's images, ~2x the CPU of point
samples), smoke.
"""

import ml_collections

from rlhf_tf.data import sources
from rlhf_tf.jobs import experiment_file
from rlhf_tf.preferences import scenes
from rlhf_tf.render import histogram


def get_config(arg=None):
  arg = experiment_file.parse_arg(
      arg, cranium=False, turntable=False, preintegrated=False, smoke=False
  )
  config = ml_collections.ConfigDict()
  config.job = 'render'
  config.volume = sources.default_config()
  config.volume.source = 'cranium' if arg.cranium else 'phantom'
  config.histogram = histogram.default_config()
  config.render = scenes.default_config()
  config.render.preintegrate = arg.preintegrated
  config.render.tensor_normals = arg.preintegrated
  config.actions_file = ''
  config.polygons = ()  # e.g. (((0.35, 0.0), (1.0, 0.0), (1.0, 0.8), ...),)
  config.turntable = 12 if arg.turntable else 0  # views around the head
  if arg.smoke:
    config.volume.shape = (24, 24, 24)
    config.histogram.bins = 32
    config.render.image_size = 16
    config.turntable = 2  # The turntable path runs in the smoke test too.
  return config
