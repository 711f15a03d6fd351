"""A simulated inspector that compares two renderings by a priority list.

The paper's inspector compared renderings "based on a specifically designed
priority list" (sec. 3). This one is written down, so the whole pipeline can
be run, tested and measured without a person:

  1. target_visible -- of the pixels whose ray meets bone or teeth, how much
                        of the pixel bone and teeth make (mean compositing
                        weight): the jaw and teeth must be seen.
  2. unoccluded     -- 1 - the soft tissue weight on those pixels (soft
                       tissue must not hide them).
  3. clean          -- 1 - the weight of air, noise, metal artifacts and
                       supports (head holders, table) over the whole image
                       (no opacity on air / streaks / what is not patient).
  4. teeth_visible  -- of the pixels whose ray meets teeth, how much of the
                       pixel the teeth make.
  5. contrast       -- spread (std) of the luminance over the covered pixels.

Two renderings that both fail the first priority (target_visible below
``fail_below``: the jaw is mostly hidden in both) are 'equal' -- an inspector
does not rank two useless images, which is where most of a person's ties
come from. Otherwise criteria are compared in this order; the first whose
difference exceeds its tolerance decides; all within tolerance -> 'equal'.
The defaults give the paper's tie rate (613 / 4,000 = 15 %) on both the
paper's action set (50 random actions) and the quickstart's (200): 12-17 %
and 14-17 % over phantom patients 0-4 (tests/test_simulated_dataset.py).
All criteria are "higher is better" and lie in [0, 1]. The scalar
``score`` weights the criteria by priority (each weight a quarter of the one
before), so it mostly orders actions as the comparisons do (measured in the
tests).

The per-pixel tissue weights come from the renderer: W_g(pixel) =
sum_i T_i alpha_i [sample i in group g] (the compositing weights of eq.
C = sum_i T_i alpha_i c_i, split by tissue group; see ``tissue_rendering``).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import ml_collections
import numpy as np

from rlhf_tf.preferences import tissues

CRITERIA = (
    'target_visible',
    'unoccluded',
    'clean',
    'teeth_visible',
    'contrast',
)
CHOICES = ('left', 'right', 'equal')


@dataclasses.dataclass(frozen=True)
class InspectorConfig:
  """The inspector's tolerances, score weights and human-like noise.

  tolerances: per criterion, in criterion units ([0, 1]).
  weights: score weights per criterion (priority order).
  fail_below: target_visible level under which a rendering fails the first
    priority; two failing renderings are 'equal' (0 = off).
  flip_prob: probability of replacing an answer by another one at random.
  temperature: Bradley-Terry noise on the score: a decisive answer is kept
    with probability sigmoid(|score difference| / temperature); 0 = off.
  """

  tolerances: tuple = (0.048, 0.036, 0.024, 0.036, 0.024)
  weights: tuple = (1.0, 0.25, 0.0625, 0.015625, 0.00390625)
  fail_below: float = 0.5
  flip_prob: float = 0.0
  temperature: float = 0.0

  def __post_init__(self):
    for name in ('tolerances', 'weights'):
      value = getattr(self, name)
      if len(value) != len(CRITERIA):
        raise ValueError(
            f'inspector {name} needs {len(CRITERIA)} values '
            f'({", ".join(CRITERIA)}), got {len(value)}'
        )
      if any(not np.isfinite(v) or v < 0 for v in value):
        raise ValueError(
            f'inspector {name} must be finite and >= 0, got ' f'{value}'
        )
    if not 0.0 <= self.fail_below <= 1.0:
      raise ValueError(f'fail_below must be in [0, 1], got {self.fail_below}')
    if not 0.0 <= self.flip_prob <= 1.0:
      raise ValueError(f'flip_prob must be in [0, 1], got {self.flip_prob}')
    if self.temperature < 0:
      raise ValueError(f'temperature must be >= 0, got {self.temperature}')


def default_config() -> ml_collections.ConfigDict:
  """config.inspector: the simulated inspector's name, tolerances, noise."""
  return ml_collections.ConfigDict(
      dict(
          name='simulated',
          tolerances=InspectorConfig().tolerances,
          fail_below=InspectorConfig().fail_below,
          flip_prob=0.0,
          temperature=0.0,
          seed=0,
      )
  )


def from_config(cfg: ml_collections.ConfigDict) -> InspectorConfig:
  """The InspectorConfig of a ``config.inspector`` block."""
  return InspectorConfig(
      tolerances=tuple(cfg.tolerances),
      fail_below=cfg.get('fail_below', InspectorConfig().fail_below),
      flip_prob=cfg.flip_prob,
      temperature=cfg.temperature,
  )


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
  count = mask.sum()
  return float((values * mask).sum() / count) if count else 0.0


def criteria(
    weights: np.ndarray, hits: np.ndarray, rgba: np.ndarray
) -> np.ndarray:
  """The five criteria of one rendering.

  Args:
    weights: [H, W, G] compositing weight of each tissue group per pixel
      (sums to the pixel's opacity; G = len(tissues.GROUPS)).
    hits: [H, W, G] bool, whether the pixel's ray meets each group at all.
    rgba: [H, W, 4] the rendering (RGB over the background, alpha).

  Returns:
    (5,) float64 criteria in CRITERIA order, each in [0, 1].
  """
  weights = np.asarray(weights, np.float64)
  hits = np.asarray(hits, bool)
  target = hits[..., tissues.TEETH] | hits[..., tissues.BONE]
  visible = _masked_mean(
      weights[..., tissues.TEETH] + weights[..., tissues.BONE], target
  )
  unoccluded = 1.0 - _masked_mean(weights[..., tissues.SOFT], target)
  teeth = _masked_mean(weights[..., tissues.TEETH], hits[..., tissues.TEETH])
  clutter = (
      weights[..., tissues.AIR]
      + weights[..., tissues.METAL]
      + weights[..., tissues.SUPPORT]
  )
  clean = 1.0 - float(clutter.mean())
  alpha = np.asarray(rgba[..., 3], np.float64)
  luminance = np.asarray(rgba[..., :3], np.float64) @ [0.2126, 0.7152, 0.0722]
  covered = alpha > 0.05
  contrast = (
      float(np.clip(2.0 * luminance[covered].std(), 0.0, 1.0))
      if covered.sum() > 1
      else 0.0
  )
  return np.clip(
      np.array([visible, unoccluded, clean, teeth, contrast]), 0.0, 1.0
  )


def score(crit, config: InspectorConfig = InspectorConfig()) -> np.ndarray:
  """Scalar quality [...] in [0, 1] of criteria [..., 5], priority-weighted."""
  w = np.asarray(config.weights, np.float64)
  return np.asarray(crit, np.float64) @ w / w.sum()


def action_criteria(scene, actions, mesh=None) -> np.ndarray:
  """The criteria [A, 5] of actions [A, n, 2] on a scene (each rendered
  once with its tissue weights; the renderings split over ``mesh``)."""
  crit = [
      criteria(weights[k], hits[k], rgba[k])
      for _, (rgba, weights, hits) in scene.iter_render_many(
          np.asarray(actions, np.float32), tissue_weights=True, mesh=mesh
      )
      for k in range(len(rgba))
  ]
  return np.reshape(crit, (-1, len(CRITERIA)))


def score_actions(
    scene, actions, cfg: ml_collections.ConfigDict, mesh=None
) -> np.ndarray:
  """The inspector's score [A] of actions [A, n, 2] on a scene: the 'gold'
  reward of the evaluation and of the agent's monitor (``cfg`` is a
  ``config.inspector`` block); the renderings split over ``mesh``."""
  return score(action_criteria(scene, actions, mesh), from_config(cfg))


def compare_criteria(
    left, right, config: InspectorConfig = InspectorConfig()
) -> str:
  """The noiseless priority-list decision: 'left', 'right' or 'equal'."""
  left, right = np.asarray(left, np.float64), np.asarray(right, np.float64)
  if max(left[0], right[0]) < config.fail_below:
    return 'equal'  # Both fail the first priority.
  diff = left - right
  for d, tol in zip(diff, config.tolerances):
    if abs(d) > tol:
      return 'left' if d > 0 else 'right'
  return 'equal'


def judge_pairs(
    key,
    crit_by_action: np.ndarray,
    pairs: np.ndarray,
    config: InspectorConfig = InspectorConfig(),
) -> list[str]:
  """The inspector's answers to many (left, right) pairs of one scene.

  Args:
    key: PRNG key for the human-like noise (unused when it is off).
    crit_by_action: [A, 5] criteria of each action's rendering.
    pairs: [P, 2] (left, right) action indices.
    config: tolerances, weights, noise.

  Returns:
    P answers in CHOICES. Noiseless answers are antisymmetric (swapping left
    and right swaps the answer) and 'equal' for identical renderings.
  """
  crit_by_action = np.asarray(crit_by_action, np.float64)
  answers = [
      compare_criteria(crit_by_action[l], crit_by_action[r], config)
      for l, r in np.asarray(pairs)
  ]
  if config.flip_prob == 0.0 and config.temperature == 0.0:
    return answers
  scores = score(crit_by_action, config)
  k_temp, k_flip, k_pick = jax.random.split(key, 3)
  u_temp = np.asarray(jax.random.uniform(k_temp, (len(answers),)))
  u_flip = np.asarray(jax.random.uniform(k_flip, (len(answers),)))
  picks = np.asarray(jax.random.randint(k_pick, (len(answers),), 0, 2))
  noisy = []
  for i, ((l, r), answer) in enumerate(zip(np.asarray(pairs), answers)):
    if config.temperature > 0 and answer != 'equal':
      keep = 1.0 / (
          1.0 + np.exp(-abs(scores[l] - scores[r]) / config.temperature)
      )
      if u_temp[i] > keep:
        answer = 'right' if answer == 'left' else 'left'
    if u_flip[i] < config.flip_prob:
      answer = [c for c in CHOICES if c != answer][picks[i]]
    noisy.append(answer)
  return noisy


def tie_rate(answers: Sequence[str]) -> float:
  return float(np.mean([a == 'equal' for a in answers])) if answers else 0.0
