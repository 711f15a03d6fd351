"""A TF for a new scan from a trained reward, exported to Slicer/ParaView/VTK.

  python launch.py --experiment=experiments/propose.py \
      --experiment.volume.source=cranium \
      --experiment.reward_workdir=workdir/quickstart --workdir=workdir/propose

Your own scan: --experiment.volume.source=dicom
--experiment.volume.path=/path/to/dicom_folder (or source=inv3, path=x.inv3);
add --experiment.agent_workdir=<train_agent workdir> to include the agent's
action among the candidates. The quickstart's reward has seen one scan;
for yours prefer the workdir of reward_ce.py:multiscene (six patient
phantoms; same model and JH bins), best trained on inspectors' votes on
scans like yours (README: "Your own scan", with how scan-specific the
proposals measured).

Writes proposal.json (ranked candidates: polygon in JH coordinates and in
HU x HU/mm, reward mean/std over the ensemble seeds, inspector score,
out-of-distribution distance, provenance), candidate_<i>.png,
polygons_on_jh.png, turntable.gif, export/ (tf.nrrd + render_tf_vtk.py,
tf.vp.json, tf.vp, tf_paraview.json, volume.nrrd, open_in_slicer.py) and
baselines.json/.md/.png (proposal vs built-in expert vs every InVesalius
preset vs the median random action; a table of several runs:
python -m rlhf_tf.evaluation.baselines DIR ...).
Expected with the quickstart's reward: about a minute on 2 CPU cores
(README: "Your own scan"); proposal's inspector score >= 0.95 x the
expert's on the unseen phantom (seed 7, the default volume).

Args: '' (the quickstart's reward model and JH bins) | 'smoke' (every size
tiny; trains its own smoke reward in the workdir first). Builds on
reward_ce.py: the checkpoint must fit its config.reward.model and
histogram.bins.
"""

import ml_collections

from rlhf_tf.agent import policy as policy_lib
from rlhf_tf.jobs import experiment_file


def get_config(arg=None):
  arg = experiment_file.parse_arg(arg, smoke=False)
  # The dataset / inspector / reward blocks of the reward's own training
  # config: the checkpoint must fit config.reward.model and histogram.bins.
  config = experiment_file.load_config(
      'reward_ce.py:smoke' if arg.smoke else 'reward_ce.py',
      relative_to=__file__,
  )
  config.job = 'propose'
  config.volume.seed = 7  # an unseen phantom (the quickstart trains on 0)
  config.reward_workdir = ''
  config.loss = 'ce'
  config.train_reward_if_missing = False
  config.agent_workdir = ''
  config.export_volume = True  # export/volume.nrrd + open_in_slicer.py
  config.agent_policy = policy_lib.default_config()
  config.propose = ml_collections.ConfigDict(
      dict(
          seed=0,
          ascent_starts=16,
          ascent_steps=150,
          reference_actions=256,
          ascent_lr=0.01,
          ensemble_k=1.0,
          top_k=3,
          gold_image_size=64,
          turntable_views=8,
          turntable_size=128,
      )
  )
  config.baselines = ml_collections.ConfigDict(
      dict(enabled=True, invesalius_dir='', slicer_files=(), num_random=32)
  )
  if arg.smoke:
    config.train_reward_if_missing = True
    p = config.propose
    p.ascent_starts, p.ascent_steps, p.top_k = 4, 5, 2
    p.gold_image_size, p.turntable_views, p.turntable_size = 16, 2, 16
    config.baselines.num_random = 4
  return config
