"""Job `propose`: a TF for a new scan, in the formats of the field.

Volume (phantom | cranium | DICOM folder | .inv3) + a trained reward workdir
(+ optionally an agent workdir) -> <workdir>/:

  proposal.json        candidates ranked by the conservative ensemble reward
                       mean - k std over the reward's seeds (polygon in JH
                       coordinates and in HU x HU/mm, TF parameters, reward
                       mean/std, inspector score), the out-of-distribution
                       distance, the separable export's error, provenance
  candidate_<i>.png    a rendering per kept candidate (0 = the proposal)
  polygons_on_jh.png   the kept polygons on the JH
  turntable.gif        the proposal seen from around the head
  export/              tf.nrrd + render_tf_vtk.py, tf.vp.json, tf.vp,
                       tf_paraview.json (rlhf_tf.export.bundle)
  baselines.json/.md/.png  inspector score of the proposal vs the built-in
                       expert, every imported preset and the median random
                       action (.md: the table); the renderings side by side

Candidates: the agent's action (config.agent_workdir,
rlhf_tf.agent.saved_policy), the final polygons of the multi-start reward
ascent under every seed and the built-in expert heuristic
(rlhf_tf.evaluation.proposal_run).
"""

from __future__ import annotations

import json
import os
import time

from rlhf_tf.agent import saved_policy
from rlhf_tf.evaluation import proposal_run


class _Progress:
  """One console line per stage, with the elapsed time."""

  def __init__(self):
    self.t0 = time.perf_counter()

  def __call__(self, msg: str):
    print(f'[propose {time.perf_counter() - self.t0:5.1f} s] {msg}', flush=True)

  @property
  def seconds(self) -> float:
    return time.perf_counter() - self.t0


def run(config, workdir: str) -> dict:
  say = _Progress()
  agent_action = None
  if config.agent_workdir:
    agent_action = lambda jh: saved_policy.mode_action(config, jh)
  result = proposal_run.propose(config, workdir, say, agent_action)
  result['seconds'] = round(say.seconds, 1)
  with open(os.path.join(workdir, 'proposal.json'), 'w') as f:
    json.dump(result, f, indent=1)
  say(f'done: {os.path.join(workdir, "proposal.json")}')
  return result
