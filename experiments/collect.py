"""Collect pairwise preferences from human inspectors in the browser.

  python launch.py --experiment=experiments/collect.py --workdir=/tmp/collect \
      --experiment.inspectors=inspector-1,inspector-2
  python launch.py --experiment=experiments/collect.py --workdir=DIR \
      --experiment.inspectors=inspector-1,inspector-2 --experiment.port=9000 \
      --experiment.overlap=0.25 --experiment.selection=disagreement \
      --experiment.ensemble_reward_workdir=DIR_OF_A_REWARD_RUN

Prints one personal link per inspector (default server
http://127.0.0.1:8765/; send each link to its inspector only: it signs them
in, and nobody can vote or undo as someone else). Each inspector
then sees two renderings of one scene side by side (every scene of the
dataset is served, e.g. --experiment.scenes=phantom:0-7,cranium or
dicom:FOLDER for one scene per series; a pair is always within one scene)
and answers with
the arrow keys (left / right / down = equal), 'b' (both bad: neither is
acceptable, stored apart from equal; reward training treats it as a tie
unless --experiment.both_bad=drop), 's' (skip) or 'u' (undo).
Votes go to DIR/preferences.sqlite at once; /results shows votes per
inspector, the tie rate and agreement on pairs rated twice, and
/export.jsonl downloads the store. Stop with Ctrl-C; restarting resumes.
The scenes, actions and pairs are the dataset's (as in experiments/simulate.py
and reward_*.py): train on the human votes with
`launch.py --experiment=experiments/reward_ce.py --workdir=DIR
 --experiment.data_source=human`.

Turning the pair: both renderings are shown from --experiment.ui.azimuths
evenly spaced azimuths around the scan (default 12; 1 = one fixed view) and
turn together with the keys ',' and '.' (the arrow keys vote) or by dragging
an image sideways; each vote records the azimuth it was cast at (/results
counts votes per view). The first pair shows at the scene's own view at
once; the page then loads the other views, nearest first (each new view of a
scene builds its ray cache once; --experiment.ui.view_caches of them are
kept, ~110 MB each at 256^2 on the default phantom).

Renderings free of wood-grain rings: add
--experiment.render.preintegrate=True --experiment.render.tensor_normals=True
(pre-integrated classification and structure-tensor shading; a new view's
ray cache then takes ~3 s instead of ~1 s and an image ~0.1-0.25 s instead of
~0.04 s on 2 cores). The store records the setting, so pass the same two
flags to the reward_*.py run that trains on these votes.

Reference presets: the page offers the InVesalius raycasting presets (once
fetched with `python -m rlhf_tf.export.invesalius_presets`) and any Slicer
file given with --experiment.reference_presets.slicer_files="('my.vp.json',)"
as a reference rendering beside the pair (key P); votes stay on the pair.

Arg: '' | 'smoke' (simulate.py:smoke's tiny scene, 3 views, serves for 3 s
on a free port, then stops). Builds on simulate.py.
"""

import ml_collections

from rlhf_tf.jobs import experiment_file
from rlhf_tf.reward import train


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, smoke=False)
  # The scenes, actions and pairs of simulate.py (same ids as its votes).
  config = experiment_file.load_config(
      'simulate.py:smoke' if arg.smoke else 'simulate.py', relative_to=__file__
  )
  config.job = 'collect'
  config.host = '127.0.0.1'
  config.port = 8765
  config.threads = 8
  config.seed = 0
  config.lease_seconds = 120.0  # rl-teacher's 2-minute lease
  config.overlap = 0.2  # fraction of pairs that get a second inspector
  config.votes_target = 200  # per inspector, for the progress bar
  config.selection = 'random'  # 'random' | 'disagreement'
  # Who may vote: each name gets a personal link (printed at start; the
  # secret that signs them is <workdir>/ui_secret.key).
  config.inspectors = 'inspector1'
  # Active querying (selection='disagreement'): a trained reward model's
  # workdir (all its seeds form the ensemble) or an .npy [M, A] of rewards.
  config.ensemble_reward_workdir = ''
  config.ensemble_loss = 'ce'
  config.ensemble_rewards_path = ''
  config.reward = train.default_config()  # the trained model's architecture
  # Presets of the viewers inspectors know, shown beside the pair (never voted
  # on): InVesalius .plist from invesalius_dir ('' = the fetched cache,
  # none when not fetched) and these Slicer .vp.json files.
  config.reference_presets = ml_collections.ConfigDict(
      dict(enabled=True, invesalius_dir='', slicer_files=())
  )
  # The views a pair turns through (rlhf_tf/ui/scene_views.py): azimuths
  # render.azimuth + 360 k / azimuths; ray caches of views kept at once.
  config.ui = ml_collections.ConfigDict(dict(azimuths=12, view_caches=12))
  config.prerender = True
  config.serve_seconds = 0.0  # 0 = until Ctrl-C
  if arg.smoke:
    config.port = 0  # any free port
    config.serve_seconds = 3.0
    config.votes_target = 20
    config.ui.azimuths = 3
    config.ui.view_caches = 2
  return config
