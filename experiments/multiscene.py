"""Leave-one-scene-out: a reward trained on the other scans, measured on one
it never saw (issue 13).

  python launch.py --experiment=experiments/multiscene.py \
      --workdir=workdir/multiscene

Scenes: 8 phantoms that differ like patients (seeds 0-7, 128^3) and the
InVesalius Cranium CT when it is fetched (.ci/fetch_cranium.sh). Per scene
10 expert + 200 random + 40 augmented actions, 2,000 pairs judged by the
simulated inspector at 64^2 px (its criteria are image averages: 64 px
agrees with 256 px to Spearman 0.9998). One fold per scene: L_C, one seed,
30 epochs on the other scenes' votes; on the held-out scene: decisive-pair
accuracy over its own labelled pairs, Spearman rho vs the inspector over
2,000 unseen random actions, reward ascent's TF scored against the expert.
The Cranium fold trains on the phantoms only (phantoms -> real CT).
Outputs: multiscene/summary.json, table.md, held_out.png.
Args: '' | 'phantoms' (no Cranium) | 'smoke' (3 tiny phantoms, seconds).
Builds on simulate.py (scenes, actions, pairs and inspector).
Result (held-out scene): phantoms 0-7 mean decisive accuracy 0.929
(0.903-0.945; goal 0.95: missed), Spearman rho 0.889 (0.837-0.915),
ascent / expert 1.04; Cranium from phantoms only: 0.897, 0.803, 1.14
(measured before the renderer's fixed depth grid, 9c2812e, which moves
inspector scores by ~0.01). 14.8 min of CPU time (70 min wall on a 2-core
machine shared at load ~20), so <= 30 min on 2 free cores; summary.json
records wall and CPU seconds.
Why the accuracy stops near 0.93 (summary.json 'errors' per fold,
scene_holdout.error_breakdown; folds of phantoms 4 and 0): the
inspector's own score orders 97.8 / 97.0 % of the held-out decisive pairs
as its priority list does, so they are learnable; the reward's errors sit
where the score barely separates the two renderings -- right in 58 / 66 %
of the tenth of decisive pairs with the smallest |score difference|, 86 /
90 % of the next 15 %, 97-100 % of the top half; in pairs decided by a
lower priority (unoccluded 68 / 73 %, teeth 34 / 71 %) and where both
renderings pass the first priority (83 / 89 %, against 95 / 98 % where one
fails). Rho suffers from the same source: between two renderings that
both fail the first priority the inspector says 'equal', so nothing orders
them; over the unseen actions scoring under 0.5 (36-45 %) rho is 0.2, over
the others 0.90-0.91. Tried without the test folds (trained on phantoms
0-7, measured on validation phantoms 8 and 9; decisive accuracy, rho over
500 unseen actions): this file's reward 0.942 / 0.938, 0.892 / 0.905;
with coverage features (--experiment.reward.model.coverage_grid=16: the
JH mass each polygon covers) 0.931 / 0.934, 0.889 / 0.909; with 500
instead of 200 random actions per scene 0.940 / 0.935, 0.865 / 0.933
(with the new renderer): neither helps, so neither is the default. Not
tried for lack of time: more training scenes (the paper had 16) and seed
ensembles.
"""

import ml_collections

from rlhf_tf.data import sample_fetch
from rlhf_tf.jobs import experiment_file
from rlhf_tf.reward import train


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, phantoms=False, smoke=False)
  config = experiment_file.load_config(
      'simulate.py:smoke' if arg.smoke else 'simulate.py', relative_to=__file__
  )
  config.job = 'multiscene'
  config.scenes = 'phantom:0-7'
  if not (arg.phantoms or arg.smoke) and sample_fetch.cranium_path().is_file():
    config.scenes += ',cranium'
  # Comma-separated scene ids or scenes entries ('phantom:0-7').
  config.held_out = ''  # The scenes measured, one fold each; '' = all.
  config.train_pool = ''  # A fold trains on these minus its own; '' = all.
  config.render.image_size = 64
  config.actions.num_random = 200
  config.pairs.num = 2000
  # One L_C reward per fold (reward/train.py), trained on the other scenes.
  config.reward = train.default_config()
  config.reward.losses = ('ce',)
  config.reward.num_seeds = 1
  config.reward.num_epochs = 30
  config.reward.checkpoint_every_epochs = 30
  config.eval = ml_collections.ConfigDict(
      dict(
          seed=0,
          num_gold=2000,
          gold_image_size=64,
          ascent_starts=32,
          ascent_steps=200,
          ascent_lr=0.01,
      )
  )
  if arg.smoke:
    config.scenes = 'phantom:0-2'
    config.render.image_size = 16
    config.actions.num_random = 6
    config.pairs.num = 60
    config.reward.num_epochs = 2
    config.reward.batch_size = 16
    experiment_file.shrink_reward_model(config.reward.model)
    config.eval.update(
        dict(num_gold=16, gold_image_size=16, ascent_starts=2, ascent_steps=3)
    )
  return config
