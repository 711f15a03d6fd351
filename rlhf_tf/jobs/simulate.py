"""Jobs `build_actions` and `simulate_preferences` (paper sec. 3 data).

build_actions: per scene, the action set D (experts, random, augmented),
  the pairs, and a PNG rendering of every action in the store's image cache
  (what the browser UI shows).
simulate_preferences: build_actions, then the simulated inspector renders
  every action once (with tissue weights), judges every pair by its priority
  list and writes the answers to the store as 'simulated' votes
  (rlhf_tf.preferences.simulated_votes).
"""

from __future__ import annotations

import json

from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.preferences import dataset, simulated_votes


def build_actions(config, workdir: str) -> dict:
  """Registers D and the pairs of every scene; renders each action once."""
  store = dataset.open_store(config, workdir)
  mesh = mesh_lib.make_mesh(config.get('mesh'))
  out = {}
  for spec in dataset.scene_specs(config):
    data = dataset.ensure_scene(store, spec, config, mesh=mesh)
    simulated_votes.cache_renders(store, data, config.render, mesh=mesh)
    out[spec.scene_id] = dict(actions=len(data.vertices), pairs=len(data.pairs))
  store.close()
  # Process 0's renders are in the store before any process goes on.
  distributed.barrier('build_actions done')
  if distributed.is_primary():
    print(json.dumps(out, indent=2))
  return out


def simulate_preferences(config, workdir: str) -> dict:
  """D, pairs and the simulated inspector's votes for every scene
  (simulated_votes.simulate_dataset; <workdir>/simulate_summary.json)."""
  summary = simulated_votes.simulate_dataset(config, workdir)
  if distributed.is_primary():
    print(json.dumps(summary, indent=2))
  return summary
