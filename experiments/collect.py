"""Collect pairwise preferences from human inspectors in the browser.

  python launch.py --experiment=experiments/collect.py --workdir=/tmp/collect
  python launch.py --experiment=experiments/collect.py:smoke --workdir=...
  python launch.py --experiment=experiments/collect.py --workdir=DIR \
      --experiment.port=9000 --experiment.overlap=0.25 \
      --experiment.selection=disagreement \
      --experiment.ensemble_rewards_path=DIR/rewards.npy

Prints the URL (default http://127.0.0.1:8765/). Each inspector enters a name,
then sees two renderings of the phantom head side by side and answers with
the arrow keys (left / right / down = equal), 's' (skip) or 'u' (undo).
Votes go to DIR/preferences.sqlite at once; /results shows votes per
inspector, the tie rate and agreement on pairs rated twice, and
/export.jsonl downloads the store. Stop with Ctrl-C; restarting resumes.

Arg: '' (a 96^3 phantom, 100 actions, 4,000 pairs) | 'smoke' (24^3, 12
actions, 40 pairs, small images).
"""

import ml_collections

from rlhf_tf.data import sources

# Expert polygons in JH coordinates (x: intensity over [-1024, 3071] HU,
# y: gradient magnitude): bone surfaces, enamel, the skin surface.
EXPERTS = (
    ((0.33, 0.20), (0.72, 0.20), (0.72, 0.95), (0.33, 0.95)),
    ((0.80, 0.02), (0.99, 0.02), (0.99, 0.70), (0.80, 0.70)),
    ((0.20, 0.12), (0.30, 0.12), (0.30, 0.80), (0.20, 0.80)),
)


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.job = 'collect'
  config.store_path = ''  # '' = WORKDIR/preferences.sqlite
  config.scene_id = 'phantom-0'
  config.host = '127.0.0.1'
  config.port = 8765
  config.threads = 8
  config.seed = 0
  config.lease_seconds = 120.0  # rl-teacher's 2-minute lease
  config.overlap = 0.2  # fraction of pairs that get a second inspector
  config.votes_target = 200  # per inspector, for the progress bar
  config.selection = 'random'  # 'random' | 'disagreement'
  config.ensemble_rewards_path = ''  # .npy [M models, A actions]
  volume = sources.default_volume_config()
  volume.shape = (96, 96, 96)
  config.scene = ml_collections.ConfigDict(dict(
      volume=volume,
      histogram=dict(bins=128, hu_window=(-1024.0, 3071.0),
                     grad_percentile=99.5),
      experts=EXPERTS, num_random=50, num_augmented=47, sigma=0.02,
      num_pairs=4000))
  config.render = ml_collections.ConfigDict(dict(
      mode='auto', size=512, step_mm=1.0, tau=0.01, prerender=True))
  if arg == 'smoke':
    config.scene.volume.shape = (24, 24, 24)
    config.scene.histogram.bins = 64
    config.scene.num_random = 6
    config.scene.num_augmented = 3
    config.scene.num_pairs = 40
    config.votes_target = 20
    config.render.size = 128
    config.render.step_mm = 2.0
  elif arg:
    raise ValueError(f'unknown arg {arg!r} for collect; valid: smoke')
  return config
