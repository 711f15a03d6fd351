"""Pairwise preference data for reward-model training (paper §2, eq. 3-5).

A :class:`PreferenceData` holds, for ``S`` scenes, the joint histogram (the
state s = I_JH, eq. 1) of each scene, the action set of each scene (polygons,
eq. 2) and ``P`` pairwise comparisons between two actions of the same scene.

Shapes (``B`` = JH bins, ``A`` = max actions per scene, ``n`` = vertices):

- ``jh``          [S, B, B] float32 in [0, 1] (row = gradient bin,
                  column = intensity bin; see ``rlhf_tf.render.histogram``).
- ``actions``     [S, A, n, 2] float32 (x, y) vertices in [0, 1]^2. Scenes
                  with fewer than ``A`` actions are padded with zeros.
- ``num_actions`` [S] int32, the number of valid actions of each scene.
- ``scene``, ``left``, ``right`` [P] int32: the scene of a pair and the
                  indices of its two actions within that scene.
- ``target``      [P] float32, the probability that LEFT is preferred:
                  1 = left chosen, 0 = right chosen, 0.5 = tie ("equal").
                  In the notation of eq. 4, (mu_left, mu_right) =
                  (target, 1 - target): (1, 0) / (0, 1) for decisive votes and
                  (1/2, 1/2) for ties.

Batching (:func:`epoch_batches`) keeps the last partial batch: it is padded
to ``batch_size`` with index 0 and weight 0, so every pair is seen exactly once
per epoch and the jitted step has one static shape.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class PreferenceData:
  """Scenes, their action sets and pairwise preferences (see module doc)."""

  jh: jnp.ndarray  # [S, B, B] float32
  actions: jnp.ndarray  # [S, A, n, 2] float32
  num_actions: jnp.ndarray  # [S] int32
  scene: jnp.ndarray  # [P] int32
  left: jnp.ndarray  # [P] int32
  right: jnp.ndarray  # [P] int32
  target: jnp.ndarray  # [P] float32, P(left preferred)

  @property
  def num_scenes(self) -> int:
    return int(self.jh.shape[0])

  @property
  def num_pairs(self) -> int:
    return int(self.target.shape[0])

  @property
  def bins(self) -> int:
    return int(self.jh.shape[-1])

  @property
  def num_vertices(self) -> int:
    return int(self.actions.shape[-2])

  def select(self, idx) -> 'PreferenceData':
    """The same scenes and actions with only the pairs ``idx`` [P'] kept."""
    idx = np.asarray(idx)
    return self.replace(
        scene=self.scene[idx],
        left=self.left[idx],
        right=self.right[idx],
        target=self.target[idx],
    )


def is_tie(target) -> jnp.ndarray:
  """[P] bool: the pair is a tie (target == 0.5)."""
  return target == 0.5


def validate(data: PreferenceData) -> PreferenceData:
  """Checks shapes, index ranges and targets (ValueError); returns data."""
  jh = np.asarray(data.jh)
  actions = np.asarray(data.actions)
  num_actions = np.asarray(data.num_actions)
  if jh.ndim != 3 or jh.shape[1] != jh.shape[2]:
    raise ValueError(f'jh must be [S, B, B], got {jh.shape}')
  s = jh.shape[0]
  if actions.ndim != 4 or actions.shape[0] != s or actions.shape[-1] != 2:
    raise ValueError(f'actions must be [S={s}, A, n, 2], got {actions.shape}')
  if num_actions.shape != (s,):
    raise ValueError(f'num_actions must be [S={s}], got {num_actions.shape}')
  if np.any(num_actions < 1) or np.any(num_actions > actions.shape[1]):
    raise ValueError(
        f'num_actions must be in [1, {actions.shape[1]}], got ' f'{num_actions}'
    )
  if not (np.all(np.isfinite(jh)) and np.all(np.isfinite(actions))):
    raise ValueError('jh and actions must be finite')
  scene, left, right, target = (
      np.asarray(v) for v in (data.scene, data.left, data.right, data.target)
  )
  p = target.shape[0]
  for name, v in (('scene', scene), ('left', left), ('right', right)):
    if v.shape != (p,):
      raise ValueError(f'{name} must be [P={p}], got {v.shape}')
  if p and (scene.min() < 0 or scene.max() >= s):
    raise ValueError(
        f'scene indices must be in [0, {s}), got '
        f'[{scene.min()}, {scene.max()}]'
    )
  if p:
    count = num_actions[scene]
    for name, v in (('left', left), ('right', right)):
      bad = np.nonzero((v < 0) | (v >= count))[0]
      if bad.size:
        i = bad[0]
        raise ValueError(
            f'pair {i}: {name} action {v[i]} out of range for '
            f'scene {scene[i]} with {count[i]} actions'
        )
  if np.any(~np.isfinite(target)) or np.any((target < 0) | (target > 1)):
    raise ValueError('targets must be probabilities in [0, 1]')
  return data


def from_examples(
    jh_by_scene: Sequence[np.ndarray],
    actions_by_scene: Sequence[np.ndarray],
    examples: Sequence[Tuple[int, int, int, float]],
) -> PreferenceData:
  """Builds PreferenceData from plain lists.

  Args:
    jh_by_scene: S arrays [B, B] (one JH per scene; all the same B).
    actions_by_scene: S arrays [A_s, n, 2] (A_s may differ; same n).
    examples: P tuples (scene, left, right, target) with target = P(left
      preferred): 1 = left, 0 = right, 0.5 = tie.

  Returns:
    A validated PreferenceData (action sets zero-padded to max A_s).
  """
  if len(jh_by_scene) != len(actions_by_scene) or not jh_by_scene:
    raise ValueError(
        f'need one action set per scene, got '
        f'{len(jh_by_scene)} JHs and {len(actions_by_scene)} '
        f'action sets'
    )
  jh = np.stack([np.asarray(j, np.float32) for j in jh_by_scene])
  acts = [np.asarray(a, np.float32) for a in actions_by_scene]
  n_vertices = {a.shape[1:] for a in acts}
  if len(n_vertices) != 1 or any(a.ndim != 3 for a in acts):
    raise ValueError(
        f'action sets must all be [A_s, n, 2] with the same n, '
        f'got {[a.shape for a in acts]}'
    )
  max_a = max(a.shape[0] for a in acts)
  actions = np.zeros((len(acts), max_a) + acts[0].shape[1:], np.float32)
  for i, a in enumerate(acts):
    actions[i, : a.shape[0]] = a
  ex = np.asarray(examples, np.float64).reshape(-1, 4)
  if np.any(ex[:, :3] != np.round(ex[:, :3])):
    raise ValueError('scene / left / right must be integers')
  data = PreferenceData(
      jh=jh,
      actions=actions,
      num_actions=np.asarray([a.shape[0] for a in acts], np.int32),
      scene=ex[:, 0].astype(np.int32),
      left=ex[:, 1].astype(np.int32),
      right=ex[:, 2].astype(np.int32),
      target=ex[:, 3].astype(np.float32),
  )
  return validate(data)


def split_pairs(
    data: PreferenceData, held_out_fraction: float, seed: int
) -> Tuple[PreferenceData, PreferenceData]:
  """Deterministic train / held-out split of the pairs (scenes are shared).

  The permutation comes from ``np.random.default_rng(seed)`` so it does not
  depend on JAX and is the same on every machine. Ties and decisive pairs are
  split separately (stratified) so both parts keep the tie rate; the selected
  indices are kept in their original order.

  Returns:
    (train, held_out); held_out has round(fraction * count) pairs of each kind.
  """
  if not 0.0 <= held_out_fraction < 1.0:
    raise ValueError(
        f'held_out_fraction must be in [0, 1), got ' f'{held_out_fraction}'
    )
  rng = np.random.default_rng(seed)
  tie = np.asarray(is_tie(np.asarray(data.target)))
  held = []
  for group in (np.nonzero(~tie)[0], np.nonzero(tie)[0]):
    k = int(round(held_out_fraction * group.size))
    held.append(rng.permutation(group)[:k])
  held = np.sort(np.concatenate(held)).astype(np.int64)
  mask = np.zeros(data.num_pairs, bool)
  mask[held] = True
  return data.select(np.nonzero(~mask)[0]), data.select(held)


def num_batches(num_pairs: int, batch_size: int) -> int:
  """Batches per epoch (the last partial batch is kept)."""
  return -(-num_pairs // batch_size)


def epoch_batches(
    key: jax.Array, epoch, num_pairs: int, batch_size: int
) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """The shuffled batches of one epoch; pure and jittable.

  The permutation is drawn from ``fold_in(key, epoch)`` only, so epoch e has
  the same batches whether or not the run was interrupted before it.

  Returns:
    indices [num_batches, batch_size] int32 into the pairs, and weights
    [num_batches, batch_size] float32 (1 = real pair, 0 = padding of the last
    partial batch; padded slots point at pair 0).
  """
  nb = num_batches(num_pairs, batch_size)
  perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_pairs)
  pad = nb * batch_size - num_pairs
  idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)])
  weight = jnp.concatenate(
      [jnp.ones((num_pairs,), jnp.float32), jnp.zeros((pad,), jnp.float32)]
  )
  return (
      idx.reshape(nb, batch_size).astype(jnp.int32),
      weight.reshape(nb, batch_size),
  )
