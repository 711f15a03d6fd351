"""Shared inputs of the reward-model tests with explicit keys: a tiny reward
model on a 16 x 16 JH (test_probing.py, sharded/test_probing_sharded.py,
multiprocess_reference.py)."""

import jax
import ml_collections

from rlhf_tf.reward import model as model_lib

BINS = 16


def tiny_model():
  """(model, params, jh): a tiny 4-vertex reward model, its parameters
  (key 0) and a uniform random [BINS, BINS] JH (key 1)."""
  cfg = ml_collections.ConfigDict(
      dict(
          conv_features=(4, 4, 4),
          kernel=3,
          strides=(2, 2, 2),
          input_pool=1,
          readout_pool=1,
          action_features=(8, 16),
          hidden=(16, 8),
          dropout=0.5,
          n_vertices=4,
      )
  )
  model = model_lib.model_from_config(cfg)
  params = model_lib.init_params(model, jax.random.key(0), BINS)
  jh = jax.random.uniform(jax.random.key(1), (BINS, BINS))
  return model, params, jh
