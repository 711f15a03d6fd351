"""Expert actions: polygons around the bone and teeth clusters of the JH.

For a volume with tissue groups (labels, or HU thresholds without labels) the
JH coordinates of the bone and teeth voxels locate the cluster an expert
would outline: intensities from just above soft tissue up to enamel, and
gradients from zero up to the bone boundaries. Ten variants (a tighter or
looser low-intensity edge, lower or higher gradient ceiling, a slanted edge
that follows the soft-tissue/bone boundary arc) make the paper's ten
"pre-defined actions based on a manual 2D TF design". User data can instead
bring its own experts as a JSON file.
"""

from __future__ import annotations

import json

import numpy as np

from rlhf_tf.input_error import InputError
from rlhf_tf.preferences import tissues
from rlhf_tf.render import polygon, polygon_validation
from rlhf_tf.render.histogram import JHAxes

# (low-x percentile of the target voxels, gradient ceiling percentile,
#  slant of the low-x edge towards lower intensity at high gradient, JH units)
_VARIANTS = (
    (5, 97, 0.00),
    (10, 97, 0.00),
    (15, 98, 0.03),
    (5, 99, 0.05),
    (20, 95, 0.02),
    (10, 99, 0.06),
    (8, 92, 0.00),
    (12, 96, 0.04),
    (3, 98, 0.02),
    (25, 99, 0.05),
)


def target_coordinates(
    hu,
    grad_mag,
    groups,
    axes: JHAxes,
    max_samples: int = 200_000,
    seed: int = 0,
):
  """JH (x, y) of (a subsample of) the bone and teeth voxels, [N, 2]."""
  target = (groups == tissues.BONE) | (groups == tissues.TEETH)
  idx = np.flatnonzero(target.reshape(-1))
  if idx.size == 0:
    raise InputError(
        'the volume has no bone or teeth voxels to outline for '
        'the built-in expert action (not a head CT?); give '
        'actions with actions_file= or polygons='
    )
  if idx.size > max_samples:
    idx = np.random.default_rng(seed).choice(idx, max_samples, replace=False)
  x = np.clip(axes.hu_to_x(np.asarray(hu).reshape(-1)[idx]), 0.0, 1.0)
  y = np.clip(axes.grad_to_y(np.asarray(grad_mag).reshape(-1)[idx]), 0.0, 1.0)
  return np.stack([x, y], axis=-1)


def expert_actions(
    hu, grad_mag, groups, axes: JHAxes, num: int = 10
) -> np.ndarray:
  """``num`` expert quadrilaterals [num, 4, 2] around the bone/teeth cluster."""
  if not 1 <= num <= len(_VARIANTS):
    raise ValueError(f'num experts must be in 1..{len(_VARIANTS)}, got {num}')
  xy = target_coordinates(hu, grad_mag, groups, axes)
  out = []
  for x_pct, y_pct, slant in _VARIANTS[:num]:
    x_lo = float(np.percentile(xy[:, 0], x_pct))
    y_hi = float(np.clip(np.percentile(xy[:, 1], y_pct), 0.2, 1.0))
    x_top = max(x_lo - slant, 0.0)
    quad = np.array(
        [[x_lo, 0.0], [1.0, 0.0], [1.0, y_hi], [x_top, y_hi]], np.float32
    )
    out.append(np.asarray(polygon.canonicalize(quad)))
  return np.stack(out)


def load_expert_actions(path: str) -> np.ndarray:
  """Experts from JSON: a list of polygons, each a list of [x, y] vertices.

  All polygons must have the same number of vertices (the action size of the
  reward model) and be valid (``polygon_validation.validate_polygon``).
  """
  try:
    with open(path, 'rb') as f:
      data = json.loads(f.read().decode('utf-8'))
  except UnicodeDecodeError as e:
    raise InputError(f'{path}: not UTF-8 JSON text ({e})') from e
  except json.JSONDecodeError as e:
    raise InputError(f'{path}: not valid JSON ({e})') from e
  except RecursionError:
    raise InputError(f'{path}: JSON nested too deeply') from None
  if not isinstance(data, list) or not data:
    raise InputError(
        f'{path}: expected a non-empty list of polygons, got '
        f'{type(data).__name__}'
    )
  out = [
      polygon_validation.validate_polygon(p, name=f'{path}: polygon {i}')
      for i, p in enumerate(data)
  ]
  sizes = sorted({len(p) for p in out})
  if len(sizes) != 1:
    raise InputError(
        f'{path}: every polygon must have the same vertex count '
        f'(the action size of the reward model), got counts '
        f'{sizes}'
    )
  return np.asarray(polygon.canonicalize(np.stack(out)), np.float32)
