"""The action of a policy that train_agent saved: the agent's TF proposal.

train_agent (rlhf_tf.agent.training_run) writes the policy parameters with
orbax to <agent_workdir>/agent/checkpoint; ``mode_action`` reads them back
for config.agent_policy and returns the policy's mode on a JH, the
deterministic action the agent proposes (eq. 2: a polygon [n, 2] in [0, 1]^2).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from rlhf_tf.agent import policy as policy_lib


def mode_action(config, jh_image) -> np.ndarray:
  """The saved policy's mode action [n, 2] on jh_image [B, B] (config:
  agent_workdir, agent_policy)."""
  net = policy_lib.net_from_config(config.agent_policy)
  path = os.path.abspath(
      os.path.join(config.agent_workdir, 'agent', 'checkpoint')
  )
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f'{path} not found: config.agent_workdir must be '
        f'the workdir of a train_agent run'
    )
  like = policy_lib.init_params(net, jax.random.key(0), jh_image.shape[-1])
  params = ocp.StandardCheckpointer().restore(
      path,
      jax.tree_util.tree_map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like
      ),
  )
  return np.asarray(
      policy_lib.mode(net, params, jnp.asarray(jh_image[None], jnp.float32))
  )[0]
