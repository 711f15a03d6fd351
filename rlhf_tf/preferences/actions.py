"""The action set D of a scene and the preference pairs drawn from it.

Paper sec. 3: per scene, 50 uniformly random actions, 10 pre-defined expert
actions and 40 augmentations of the experts by small random vertex shifts;
4,000 preferences out of the C(100, 2) = 4,950 possible pairs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import polygon, polygon_validation

RANDOM, EXPERT, AUGMENTED = 'random', 'expert', 'augmented'


@dataclasses.dataclass(frozen=True)
class ActionSet:
  """The actions of one scene, each with its provenance.

  Attributes:
    vertices: [A, n, 2] float32 JH coordinates, canonical (CCW) order.
    provenance: A strings in {'random', 'expert', 'augmented'}.
    parent: A ints: the expert an augmentation was derived from, else -1.
  """

  vertices: np.ndarray
  provenance: tuple
  parent: tuple

  def __len__(self) -> int:
    return int(self.vertices.shape[0])

  def indices(self, kind: str) -> np.ndarray:
    return np.asarray([i for i, p in enumerate(self.provenance) if p == kind])


def _is_valid(vertices: np.ndarray, min_area: float) -> bool:
  try:
    polygon_validation.validate_polygon(vertices, min_area=min_area)
  except polygon_validation.PolygonError:
    return False
  return True


def augment(
    key,
    expert: np.ndarray,
    sigma: float,
    min_area: float = 1e-3,
    max_tries: int = 100,
) -> np.ndarray:
  """One augmentation: every vertex shifted by N(0, sigma^2) in JH units.

  The shifted polygon is clipped to [0, 1]^2 and canonicalised; a draw that
  is still not a valid polygon (area below ``min_area``) is redrawn from
  ``fold_in(key, try)``, so the result is a valid action and depends on the
  key alone.
  """
  expert = np.asarray(expert, np.float32)
  for attempt in range(max_tries):
    shift = sigma * jax.random.normal(
        jax.random.fold_in(key, attempt), expert.shape
    )
    moved = np.asarray(polygon.canonicalize(jnp.clip(expert + shift, 0.0, 1.0)))
    if _is_valid(moved, min_area):
      return moved
  raise ValueError(
      f'no valid augmentation of expert {expert.tolist()} in '
      f'{max_tries} draws with sigma={sigma}'
  )


def random_valid_actions(
    key, num: int, n_vertices: int, min_area: float = 1e-3
) -> np.ndarray:
  """``num`` uniform canonical actions, redrawing the rare degenerate ones."""
  out = np.asarray(polygon.random_actions(key, num, n_vertices))
  for i in range(num):
    attempt = 0
    while not _is_valid(out[i], min_area):
      attempt += 1
      out[i] = np.asarray(
          polygon.random_actions(
              jax.random.fold_in(jax.random.fold_in(key, i), attempt),
              1,
              n_vertices,
          )
      )[0]
  return out


def build_action_set(
    key,
    experts,
    num_random: int = 50,
    num_augmented: int = 40,
    sigma: float = 0.02,
    min_area: float = 1e-3,
) -> ActionSet:
  """The scene's action set D: experts, then random, then augmentations.

  Args:
    key: PRNG key (split into 'random' and 'augment' purposes).
    experts: [E, n, 2] expert actions (validated here).
    num_random: uniformly random canonical actions (paper: 50).
    num_augmented: augmentations, spread evenly over the experts (paper: 40).
    sigma: standard deviation of the vertex shifts, JH units.
    min_area: smallest area of a generated action.

  Returns:
    ActionSet with A = E + num_random + num_augmented actions.
  """
  experts = np.asarray(experts, np.float32)
  if experts.ndim != 3 or experts.shape[-1] != 2 or len(experts) == 0:
    raise ValueError(
        f'experts must be [E, n, 2] with E >= 1, got ' f'{experts.shape}'
    )
  for i, e in enumerate(experts):
    polygon_validation.validate_polygon(e, name=f'expert action {i}')
  n = experts.shape[1]
  key_random, key_augment = jax.random.split(key)
  random = random_valid_actions(key_random, num_random, n, min_area)
  augmented, parents = [], []
  for j in range(num_augmented):
    parent = j % len(experts)
    augmented.append(
        augment(
            jax.random.fold_in(key_augment, j), experts[parent], sigma, min_area
        )
    )
    parents.append(parent)
  vertices = np.concatenate(
      [np.asarray(polygon.canonicalize(experts)), random]
      + ([np.stack(augmented)] if augmented else []),
      axis=0,
  ).astype(np.float32)
  provenance = (
      (EXPERT,) * len(experts)
      + (RANDOM,) * num_random
      + (AUGMENTED,) * num_augmented
  )
  parent = (-1,) * (len(experts) + num_random) + tuple(parents)
  return ActionSet(vertices=vertices, provenance=provenance, parent=parent)


def action_set_from_config(key, experts, actions_config) -> ActionSet:
  """``build_action_set`` with the sizes of an experiment's ``config.actions``.

  Args:
    key: PRNG key, passed to ``build_action_set``.
    experts: [E, n, 2] expert actions.
    actions_config: the ``config.actions`` block (num_random, num_augmented,
      sigma; its seed is the caller's to turn into ``key``).

  Returns:
    ActionSet with A = E + num_random + num_augmented actions.
  """
  return build_action_set(
      key,
      experts,
      num_random=actions_config.num_random,
      num_augmented=actions_config.num_augmented,
      sigma=actions_config.sigma,
  )


def sample_pairs(key, num_actions: int, num_pairs: int = 4000) -> np.ndarray:
  """Distinct unordered pairs with a random left/right order.

  Args:
    key: PRNG key (split into 'choose' and 'order').
    num_actions: A; pairs are drawn from the C(A, 2) possible ones.
    num_pairs: how many (paper: 4,000 of 4,950).

  Returns:
    [num_pairs, 2] int32 (left, right) action indices, no pair repeated in
    either order.
  """
  i, j = np.triu_indices(num_actions, k=1)
  if num_pairs > len(i):
    raise ValueError(
        f'{num_pairs} distinct pairs requested but {num_actions} '
        f'actions give only {len(i)}'
    )
  key_choose, key_order = jax.random.split(key)
  chosen = np.asarray(jax.random.permutation(key_choose, len(i)))[:num_pairs]
  pairs = np.stack([i[chosen], j[chosen]], axis=1).astype(np.int32)
  swap = np.asarray(jax.random.bernoulli(key_order, 0.5, (num_pairs,)))
  pairs[swap] = pairs[swap][:, ::-1]
  return pairs
