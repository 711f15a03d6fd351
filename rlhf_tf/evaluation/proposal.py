"""Proposing a TF for a new scan from a trained reward ensemble.

Pieces of the `propose` job (rlhf_tf/jobs/propose.py):

- ``load_ensemble``: every seed of one loss of a reward workdir, checked
  against the model config (JH bins, vertex count, layer sizes) with one
  clear error naming what differs.
- ``ensemble_rewards``: r_s(JH, a) for all seeds s at once, [S, N].
- ``ascent_candidates``: the multi-start projected reward ascent of
  ``probing_gradients.reward_ascent`` run under each seed's parameters; only
  valid polygons are kept.
- ``standardise``: Bradley-Terry rewards are defined up to an additive
  constant (and, across seeds, a scale) per seed, so raw rewards of
  different seeds are not comparable (measured: one quickstart seed sits
  ~120 below the other two). Each seed's rewards are z-scored against the
  same fixed reference set, R random actions on this JH
  (``rlhf_tf.reward.ensemble``, shared with the agent's PPO):
  z_s(a) = (r_s(a) - mean_ref r_s) / std_ref r_s.
- ``rank``: conservative ensemble reward  z_cons = mean_s z_s - k std_s z_s
  over the standardised rewards; near-duplicates are dropped.
- ``jh_distance`` / ``ood_distance``: how far a new JH is from the JHs the
  reward was trained on (below).

Out-of-distribution distance. The reward model sees the JH as its log-scaled
image I in [0, 1]^(B x B) (``histogram.normalise_counts``). The distance of a
new scan is

  d_OOD = min over training scenes t of  mean_ij | I_new[i, j] - I_t[i, j] |

(the mean absolute difference of the model's own inputs, in [0, 1]; 0 for
the same JH). ``OOD_THRESHOLD`` = 0.07: with the default histogram (256
bins, -1024..3071 HU) other seeds of the built-in phantom (same anatomy, new
noise, metal and pose) lie at 0.045-0.051 from seed 0, the real Cranium CT
at 0.086 (measured; tests/test_proposal.py checks the ordering on small
volumes). Above the threshold the proposal still runs and says so.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.evaluation import probing_gradients
from rlhf_tf.render import polygon as polygon_lib
from rlhf_tf.render import polygon_validation
from rlhf_tf.reward import ensemble as ensemble_lib
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward import predict

OOD_THRESHOLD = 0.07


class RewardWorkdirError(ValueError):
  """The reward workdir is missing or does not fit the config."""


@dataclasses.dataclass(frozen=True)
class RewardEnsemble:
  """All seeds of one trained loss: params stacked on a leading seed axis."""

  model: model_lib.RewardModel
  params: dict
  loss: str
  step: int
  checkpoint_dir: str
  bins: int

  @property
  def num_seeds(self) -> int:
    return int(jax.tree_util.tree_leaves(self.params)[0].shape[0])

  def seed_params(self, s: int) -> dict:
    return jax.tree_util.tree_map(lambda x: x[s], self.params)


def _param_shapes(model, bins: int) -> dict:
  jh = jnp.zeros((bins, bins), jnp.float32)
  actions = jnp.zeros((1, model.n_vertices, 2), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jh, actions))[
      'params'
  ]
  return jax.tree_util.tree_map(lambda s: tuple(s.shape), shapes)


def _fitting_sizes(loaded: dict, model) -> Optional[tuple]:
  """(bins, n_vertices) whose model shapes match the checkpoint, if any."""
  for bins, n in itertools.product(
      (16, 24, 32, 48, 64, 128, 256, 512), range(3, 9)
  ):
    try:
      other = dataclasses.replace(model, n_vertices=n)
      if _param_shapes(other, bins) == loaded:
        return bins, n
    except Exception:  # pylint: disable=broad-except
      continue
  return None


def load_ensemble(
    reward_workdir: str, reward_cfg, loss: str, bins: int
) -> RewardEnsemble:
  """Every seed of ``loss`` from <reward_workdir>/reward/<loss>/checkpoints.

  Raises:
    RewardWorkdirError: no such workdir / loss / checkpoint, or the
      checkpoint's shapes do not fit ``reward_cfg.model`` with ``bins`` JH
      bins (the message says which bins / vertex count would fit).
  """
  if not reward_workdir:
    raise RewardWorkdirError(
        'config.reward_workdir is empty: give the '
        'workdir of a trained reward (e.g. the '
        "quickstart's)"
    )
  reward_dir = os.path.join(reward_workdir, 'reward')
  ckpt = os.path.join(reward_dir, loss, 'checkpoints')
  if not os.path.isdir(ckpt):
    have = (
        sorted(
            d
            for d in os.listdir(reward_dir)
            if os.path.isdir(os.path.join(reward_dir, d, 'checkpoints'))
        )
        if os.path.isdir(reward_dir)
        else []
    )
    raise RewardWorkdirError(
        f'{ckpt} not found: {reward_workdir} holds no trained reward for '
        f'loss {loss!r} (losses there: {have or "none"}); train one with '
        f'launch.py --experiment=experiments/quickstart.py '
        f'--workdir={reward_workdir}'
    )
  step = predict.latest_epoch(reward_dir, loss)
  if step is None:
    raise RewardWorkdirError(f'{ckpt}: no checkpoint saved yet')
  stacked = predict.load_stacked_params(reward_dir, loss, step)
  model = model_lib.model_from_config(reward_cfg.model)
  loaded = jax.tree_util.tree_map(lambda x: tuple(np.shape(x)[1:]), stacked)
  expected = _param_shapes(model, bins)
  if loaded != expected:
    fit = _fitting_sizes(loaded, model)
    hint = (
        f'it fits histogram.bins={fit[0]} and reward.model.n_vertices='
        f'{fit[1]}'
        if fit
        else 'the layer sizes differ too (train it '
        'with the same reward.model, e.g. the :smoke experiment arg for a '
        'smoke reward)'
    )
    raise RewardWorkdirError(
        f'{ckpt}: the checkpoint does not fit this config (histogram.bins='
        f'{bins}, reward.model.n_vertices={model.n_vertices}); {hint}'
    )
  params = jax.tree_util.tree_map(jnp.asarray, stacked)
  return RewardEnsemble(
      model=model,
      params=params,
      loss=loss,
      step=int(step),
      checkpoint_dir=ckpt,
      bins=int(bins),
  )


@functools.partial(jax.jit, static_argnames=('model',))
def _ensemble_rewards(params, jh, actions, *, model):
  def one(p):
    return model_lib.score(model, p, model_lib.encode(model, p, jh), actions)

  return jax.vmap(one)(params)


def ensemble_rewards(ens: RewardEnsemble, jh, actions) -> np.ndarray:
  """[S, N] rewards of actions [N, n, 2] on jh [B, B] under every seed."""
  return np.asarray(
      _ensemble_rewards(
          ens.params,
          jnp.asarray(jh, jnp.float32),
          jnp.asarray(actions, jnp.float32),
          model=ens.model,
      )
  )


def is_valid_action(vertices, min_area: float = 1e-3) -> bool:
  try:
    polygon_validation.validate_polygon(np.asarray(vertices), min_area=min_area)
  except polygon_validation.PolygonError:
    return False
  return True


def ascent_candidates(
    ens: RewardEnsemble, jh, key, num_starts: int, steps: int, lr: float
) -> np.ndarray:
  """Final polygons [M, n, 2] of the vmapped multi-start reward ascent under
  each seed (key folded with the seed index); degenerate ones dropped."""
  out = []
  for s in range(ens.num_seeds):
    res = probing_gradients.reward_ascent(
        ens.model,
        ens.seed_params(s),
        jh,
        jax.random.fold_in(key, s),
        num_starts,
        steps,
        lr,
        ens.model.n_vertices,
    )
    out += [a for a in np.asarray(res['actions']) if is_valid_action(a)]
  n = ens.model.n_vertices
  return np.asarray(out, np.float32).reshape(-1, n, 2)


def standardise(rewards, reference) -> np.ndarray:
  """Per-seed z-scores [S, N] of rewards [S, N] against reference rewards
  [S, R] of the same seeds (module docstring)."""
  return np.asarray(
      ensemble_lib.standardise(
          np.asarray(rewards, np.float64), np.asarray(reference, np.float64)
      )
  )


def conservative(rewards, k: float):
  """(mean [N], std [N], mean - k std [N]) over the seed axis of [S, N]."""
  r = np.asarray(rewards, np.float64)
  mean, std = r.mean(axis=0), r.std(axis=0)
  return mean, std, mean - k * std


def rank(
    actions, rewards, k: float, top_k: int, min_distance: float = 0.02
) -> np.ndarray:
  """Indices of the ``top_k`` best actions by mean - k std, skipping any
  within ``min_distance`` (largest vertex distance, JH units, after
  canonical ordering) of one already kept."""
  _, _, cons = conservative(rewards, k)
  canon = np.asarray(polygon_lib.canonicalize(np.asarray(actions)))
  kept = []
  for i in np.argsort(-cons, kind='stable'):
    if all(np.abs(canon[i] - canon[j]).max() > min_distance for j in kept):
      kept.append(int(i))
    if len(kept) == top_k:
      break
  return np.asarray(kept, np.int64)


def jh_distance(a, b) -> float:
  """Mean absolute difference of two log-scaled JH images [B, B]."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f'JH shapes differ: {a.shape} vs {b.shape}')
  return float(np.abs(a - b).mean())


def scan_specificity_note(num_training_scenes: int) -> str:
  """What a reward trained on this many scenes can say about a new scan."""
  if num_training_scenes == 0:
    return (
        'the reward workdir holds no training scenes (no '
        'preferences.sqlite): how far this scan is from them is unknown'
    )
  if num_training_scenes == 1:
    return (
        'the reward was trained on ONE scene: it has seen one JH, so it '
        'cannot have learned how the best TF changes from scan to scan; '
        'expect about the proposal it makes for any scan. Prefer a '
        'reward trained on many scans, best with votes on scans like '
        'yours (README: "Your own scan", '
        'experiments/reward_ce.py:multiscene)'
    )
  return (
      f'the reward was trained on {num_training_scenes} scenes; the '
      'distance above says how close this scan is to the nearest'
  )


def ood_distance(jh_image, training_images) -> dict:
  """d_OOD (module docstring) against the training JHs, with the verdict."""
  dists = [jh_distance(jh_image, t) for t in training_images]
  d = min(dists) if dists else float('nan')
  return dict(
      distance=d,
      threshold=OOD_THRESHOLD,
      out_of_distribution=bool(not dists or d > OOD_THRESHOLD),
      per_training_scene=dists,
      definition='min over training scenes of the mean absolute '
      'difference of the log-scaled JH images',
  )
