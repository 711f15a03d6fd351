"""2D transfer functions (TFs) on the joint histogram from polygon actions.

A polygon action (eq. 2) defines a TF table over the JH that the raymarcher
looks up with (x = normalised intensity, y = normalised gradient magnitude).
Tables follow ``rlhf_tf.render.histogram``: ``[bins_y, bins_x, ...]`` indexed
``[row = y bin, column = x bin]``, bin ``i`` centred at ``(i + 0.5) / bins``.

Opacity is a soft indicator of the polygon,

  alpha(x, y) = alpha_max * sigmoid(d(x, y) / tau),

with d the signed distance to the polygon boundary (> 0 inside), so that the
rendering, and anything learned from it, is differentiable w.r.t. the
vertices; ``hard=True`` gives the exact indicator for display. Several
polygons per TF (the paper's future work: colour by region) combine as
independent absorbers, alpha = 1 - prod_p (1 - alpha_p), with RGB the
opacity-weighted mean of the polygons' colours.

Parameters (the ``tf`` block of the ml_collections configs):

  bins       int    table resolution per axis (>= 2), usually the JH bins.
  tau        float  sigmoid edge width in JH units (> 0); 0.01 = 1% of the
                    axis, i.e. ~2.5 bins of a 256-bin JH go from 27% to 73%.
  alpha_max  float  opacity inside a polygon, in (0, 1].
  colormap   str    intensity colour map: 'bone' (CT bone preset, default),
                    'gray', or any matplotlib colormap name.
  hard       bool   exact indicator (display only; zero gradients).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import polygon as polygon_lib
from rlhf_tf.render import polygon_validation

# Piecewise-linear colour maps: (position in [0, 1], (r, g, b)). 'bone' follows
# the usual CT bone / skin volume-rendering presets: soft tissue dark
# red-brown, through orange-tan, to ivory and white for dense bone and enamel.
_COLORMAPS = {
    'bone': (
        (0.00, (0.30, 0.06, 0.03)),
        (0.30, (0.65, 0.25, 0.12)),
        (0.55, (0.88, 0.62, 0.40)),
        (0.80, (0.96, 0.90, 0.78)),
        (1.00, (1.00, 1.00, 1.00)),
    ),
    'gray': (
        (0.00, (0.0, 0.0, 0.0)),
        (1.00, (1.0, 1.0, 1.0)),
    ),
}

# Smooths the opacity-weighted colour mean where all polygons are (nearly)
# transparent: the mean tends to the plain mean of the colours instead of 0/0.
# Its relative effect on a bin with opacity a is ~1e-6 / a, invisible once
# premultiplied by a, and it bounds the gradient by 1 / _COLOR_EPS.
_COLOR_EPS = 1e-6


def _check_static_int(name: str, value, minimum: int) -> int:
  if int(value) != value or value < minimum:
    raise ValueError(f'{name} must be an integer >= {minimum}, got {value}')
  return int(value)


def _check_concrete(name: str, value, low, high, low_open: bool):
  """Range-checks a float when it is concrete; traced values pass (jit)."""
  try:
    v = float(value)
  except jax.errors.ConcretizationTypeError:
    return
  ok = (v > low if low_open else v >= low) and v <= high
  if not ok:
    bracket = '(' if low_open else '['
    raise ValueError(f'{name} must be in {bracket}{low}, {high}], got {v}')


def check_polygons(vertices, what: str = 'polygons') -> None:
  """Refuses concrete TF polygons that would give a wrong table.

  A NaN/inf vertex would make the whole JH uniformly opaque, a bow-tie or
  collinear polygon has no well-defined inside: PolygonError naming the
  polygon's batch index. Traced values (inside jit/grad: the learner's
  canonicalised actions) pass unchecked -- checking needs concrete numbers,
  and the learner's ``canonicalize``/``random_actions`` only make simple
  polygons.
  """
  if isinstance(vertices, jax.core.Tracer):
    return
  v = np.asarray(vertices)
  if v.dtype.kind not in 'iuf':
    raise polygon_validation.PolygonError(
        f'{what}: vertices must be real numbers, ' f'got dtype {v.dtype}'
    )
  problem = polygon_validation.polygon_batch_problem(v)
  if problem is not None:
    index, reason = problem
    where = f'{what}[{", ".join(map(str, index))}]' if index else what
    raise polygon_validation.PolygonError(f'{where}: {reason}')


def bin_centres(bins: int, dtype=jnp.float32):
  """JH bin centres.

  Args:
    bins: bins per axis.
    dtype: floating dtype.

  Returns:
    [bins, bins, 2] (x, y) with [row = y bin, column = x bin], coordinates
    (i + 0.5) / bins.
  """
  c = (jnp.arange(bins, dtype=dtype) + 0.5) / bins
  x, y = jnp.meshgrid(c, c, indexing='xy')  # x varies along columns.
  return jnp.stack([x, y], axis=-1)


@functools.lru_cache(maxsize=32)
def _colormap_table(name: str, bins: int) -> np.ndarray:
  x = (np.arange(bins) + 0.5) / bins
  if name in _COLORMAPS:
    pos = np.array([p for p, _ in _COLORMAPS[name]])
    rgb = np.array([c for _, c in _COLORMAPS[name]])
    table = np.stack([np.interp(x, pos, rgb[:, k]) for k in range(3)], -1)
  else:
    import matplotlib  # Only for non-built-in names; pure numpy afterwards.

    try:
      cmap = matplotlib.colormaps[name]
    except KeyError:
      raise ValueError(
          f'unknown colormap {name!r}; use one of '
          f'{sorted(_COLORMAPS)} or a matplotlib name'
      ) from None
    table = np.asarray(cmap(x))[:, :3]
  table = np.clip(table, 0.0, 1.0).astype(np.float32)
  table.setflags(write=False)  # Cached: callers must not mutate it.
  return table


def intensity_colormap(name: str = 'bone', bins: int = 256) -> np.ndarray:
  """RGB over intensity, sampled at the JH x-bin centres.

  A constant numpy table (computed once per (name, bins)), so it embeds in
  jitted code as a constant.

  Args:
    name: 'bone' (dark red-brown -> ivory -> white), 'gray', or a
      matplotlib colormap name.
    bins: number of intensity (x) bins.

  Returns:
    [bins, 3] float32 RGB in [0, 1] (read-only).
  """
  bins = _check_static_int('bins', bins, 2)
  return _colormap_table(str(name), bins)


def _opacity_single(vertices, bins: int, tau, alpha_max, hard: bool):
  """[n, 2] -> [bins, bins] opacity (see opacity_table)."""
  vertices = jnp.asarray(vertices)
  dtype = jnp.result_type(vertices, jnp.float32)
  centres = bin_centres(bins, dtype)
  if hard:
    inside = polygon_lib.contains(centres, vertices)
    return jnp.where(inside, alpha_max, 0.0).astype(dtype)
  sd = polygon_lib.signed_distance(centres, vertices)
  return (alpha_max * jax.nn.sigmoid(sd / tau)).astype(dtype)


def _map_polygons(fn, vertices):
  """Applies fn: [n, 2] -> [...] over the leading dims of [..., n, 2]."""
  batch = vertices.shape[:-2]
  flat = vertices.reshape((-1,) + vertices.shape[-2:])
  out = jax.vmap(fn)(flat)
  return out.reshape(batch + out.shape[1:])


def opacity_table(
    vertices, bins: int, tau=0.01, alpha_max=1.0, hard: bool = False
):
  """Opacity of a polygon on the JH grid.

  alpha = alpha_max * sigmoid(signed_distance(bin centre) / tau), the soft
  polygon indicator that makes the TF differentiable w.r.t. the action
  (eq. 2); hard=True gives alpha_max inside and 0 outside (display).

  Args:
    vertices: [..., n, 2] simple polygon(s), n >= 3, JH coordinates (may
      extend beyond [0, 1]^2 here, unlike validate_polygon); checked by
      ``check_polygons`` when concrete.
    bins: table resolution per axis (static int >= 2).
    tau: sigmoid edge width in JH units (> 0).
    alpha_max: opacity deep inside the polygon, in (0, 1].
    hard: exact indicator instead of the sigmoid.

  Returns:
    [..., bins, bins] opacity in [0, alpha_max], [row = y bin, col = x bin].
  """
  bins = _check_static_int('bins', bins, 2)
  _check_concrete('tau', tau, 0.0, np.inf, low_open=True)
  _check_concrete('alpha_max', alpha_max, 0.0, 1.0, low_open=True)
  check_polygons(vertices, 'opacity_table vertices')
  return _opacity_table(jnp.asarray(vertices), tau, alpha_max, bins, bool(hard))


# Validation stays outside jit (it needs concrete values); the math is jitted
# once per (shape, bins, hard) so that eager calls do not dispatch op by op.
@functools.partial(jax.jit, static_argnames=('bins', 'hard'))
def _opacity_table(vertices, tau, alpha_max, bins: int, hard: bool):
  fn = functools.partial(
      _opacity_single, bins=bins, tau=tau, alpha_max=alpha_max, hard=hard
  )
  return _map_polygons(fn, vertices)


def tf_table(
    polygons,
    bins: int,
    tau=0.01,
    alpha_max=1.0,
    colors=None,
    colormap: str = 'bone',
    hard: bool = False,
):
  """RGBA transfer-function table from one or several polygons.

  Per polygon p the opacity alpha_p is ``opacity_table``; polygons combine
  as independent absorbers, alpha = 1 - prod_p (1 - alpha_p), and the colour
  is the opacity-weighted mean sum_p alpha_p c_p / sum_p alpha_p, where c_p
  is the intensity colour map at the bin's x (colors=None) or the polygon's
  constant colour.

  Args:
    polygons: [n, 2] (one polygon) or [..., P, n, 2] (P polygons per TF);
      simple, n >= 3, checked by ``check_polygons`` when concrete.
    bins: table resolution per axis (static int >= 2).
    tau: sigmoid edge width in JH units (> 0).
    alpha_max: opacity deep inside a polygon, in (0, 1].
    colors: None, or [..., P, 3] RGB in [0, 1] per polygon ([3] for a single
      [n, 2] polygon); broadcast against the batch dims.
    colormap: intensity colour map name used when colors is None.
    hard: exact indicators instead of sigmoids.

  Returns:
    [..., bins, bins, 4] RGBA, [row = y bin, col = x bin, (r, g, b, alpha)].
  """
  check_polygons(polygons, 'tf_table polygons')
  polygons = jnp.asarray(polygons)
  if polygons.ndim < 2 or polygons.shape[-1] != 2:
    raise ValueError(
        f'polygons must be [n, 2] or [..., P, n, 2], got ' f'{polygons.shape}'
    )
  bins = _check_static_int('bins', bins, 2)
  _check_concrete('tau', tau, 0.0, np.inf, low_open=True)
  _check_concrete('alpha_max', alpha_max, 0.0, 1.0, low_open=True)
  single = polygons.ndim == 2
  if single:
    polygons = polygons[None]
  if colors is not None:
    colors = jnp.asarray(colors)
    if single and colors.ndim == 1:
      colors = colors[None]
    if colors.ndim < 2 or colors.shape[-1] != 3:
      raise ValueError(f'colors must be [..., P, 3] RGB, got {colors.shape}')
  else:
    intensity_colormap(colormap, bins)  # Fails early on an unknown name.
  return _tf_table(
      polygons, tau, alpha_max, colors, bins, str(colormap), bool(hard)
  )


@functools.partial(jax.jit, static_argnames=('bins', 'colormap', 'hard'))
def _tf_table(
    polygons, tau, alpha_max, colors, bins: int, colormap: str, hard: bool
):
  """[..., P, n, 2] -> [..., bins, bins, 4] (see tf_table)."""
  alphas = _opacity_table(polygons, tau, alpha_max, bins, hard)
  dtype = alphas.dtype  # [..., P, b, b]
  alpha = 1.0 - jnp.prod(1.0 - alphas, axis=-3)  # [..., b, b]
  if colors is None:
    # Every polygon takes the colour of the bin's intensity, so the weighted
    # mean is that colour: nothing to weigh.
    cmap = intensity_colormap(colormap, bins)  # numpy: a jit constant.
    rgb = jnp.asarray(cmap, dtype)[None, :, :]  # [1, b_x, 3]
    rgb = jnp.broadcast_to(rgb, alpha.shape + (3,))
  else:
    w = alphas[..., None]  # [..., P, b, b, 1]
    c = colors.astype(dtype)[..., :, None, None, :]  # [..., P, 1, 1, 3]
    num = jnp.sum(w * c, axis=-4) + _COLOR_EPS * jnp.mean(c, axis=-4)
    rgb = num / (jnp.sum(w, axis=-4) + _COLOR_EPS)
    rgb = jnp.broadcast_to(rgb, alpha.shape + (3,))
  return jnp.concatenate([rgb, alpha[..., None]], axis=-1)
