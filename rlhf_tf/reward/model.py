"""The reward model r_psi(s = I_JH, a) of the paper (Fig. 1, eq. 1-3).

Architecture (paper §2, Fig. 1; the paper gives no sizes, ours are in the
config):

  JH [B, B] -> avg-pool(input_pool) -> 3 x [Conv(k, stride) -> ReLU ->
  Dropout(p = 0.5)] -> avg-pool(readout_pool) -> flatten = image features f
  action [n, 2] -> flatten 2n -> Dense+ReLU layers that up-scale it to a size
  comparable to f = action features g
  concat [f; g] -> Dense(hidden[0]) + ReLU -> Dense(hidden[i]) + ReLU ...
  -> linear Dense(1) = scalar reward r.

Coverage features (``coverage_grid`` > 0; not in the paper, 0 = off): what
the TF makes opaque. The JH avg-pooled to a G x G grid, with
``coverage_features`` ReLU(3x3 conv) maps of it, is kept with the image
embedding; per action the soft polygon indicator on the same grid,
sigmoid(signed distance / ``coverage_tau``) (the TF's own opacity shape,
transfer_function.opacity_table), weights those maps: c_k = mean_ij
mask_ij M_ijk, joined to the action's coordinates before the action
layers. The paper's action MLP must learn where each scene's tissue lies in
the JH from a handful of scenes; c says it directly ("this polygon covers
that much of the bone peak"), which is what a reward must carry to a scan it
never saw.

Defaults (``default_config``, the reward config's ``model``) for a 256-bin
JH, chosen to be cheap on CPU: pool 2 -> 128^2, 5x5 convs with 16/32/32
features and strides 4/2/2 -> 8x8x32, readout pool 2 -> F = 4*4*32 = 512
image features; action coordinates mapped to [-1, 1] then 8 -> 64 -> 512
(balanced with F, as §2 asks); hidden 256, 64; 351,649 parameters.

The JH is encoded ONCE per scene: the model is split into

- :meth:`RewardModel.encode_jh` (JH -> image embedding ``z``), and
- :meth:`RewardModel.score` (``z``, actions -> rewards).

The first fused layer Dense([f; g]) = W_f f + W_g g + b is computed as the sum
of its two halves (the same function and the same parameter count as a dense
layer on the concatenation), so its image half ``z = W_f f + b`` is part of
:meth:`encode_jh` and is computed once per JH, not once per action. Dropout
only acts inside the encoder, so in training mode every action scored against
the same ``z`` sees the same dropout mask: both members of a pair (same scene,
same step) are compared under one mask, and the reward difference is due to
the actions alone (a pair of identical actions has an exactly zero
difference). Different scenes in a step, and different steps, get independent
masks.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from rlhf_tf.render import polygon as polygon_lib
from rlhf_tf.render import transfer_function


def default_config() -> ml_collections.ConfigDict:
  """``config.model``: the sizes of the module docstring (351,649 parameters
  for a 256-bin JH); ``model_from_config`` builds the model from it."""
  return ml_collections.ConfigDict(
      dict(
          conv_features=(16, 32, 32),
          kernel=5,
          strides=(4, 2, 2),
          input_pool=2,
          readout_pool=2,
          action_features=(64, 512),
          hidden=(256, 64),
          dropout=0.5,
          n_vertices=4,
          coverage_grid=0,
          coverage_features=3,
          coverage_tau=0.02,
      )
  )


def coverage_mask(actions: jnp.ndarray, grid: int, tau: float) -> jnp.ndarray:
  """Soft indicator [..., G, G] of polygons [..., n, 2] at the centres of a
  G x G grid over the JH ([row = y, col = x]): sigmoid(signed distance /
  tau), differentiable in the vertices (finite gradients everywhere)."""
  centres = transfer_function.bin_centres(grid, actions.dtype)
  flat = actions.reshape((-1,) + actions.shape[-2:])
  sd = jax.vmap(lambda v: polygon_lib.signed_distance(centres, v))(flat)
  return jax.nn.sigmoid(sd / tau).reshape(actions.shape[:-2] + (grid, grid))


class RewardModel(nn.Module):
  """r_psi(JH, action) of Fig. 1; see the module docstring for the layout.

  Sizes have no defaults here: they come from a ``config.model`` block
  (``default_config``, via ``model_from_config``).
  """

  conv_features: Sequence[int]
  kernel: int
  strides: Sequence[int]
  input_pool: int
  readout_pool: int
  action_features: Sequence[int]
  hidden: Sequence[int]
  dropout: float
  n_vertices: int
  coverage_grid: int = 0
  coverage_features: int = 3
  coverage_tau: float = 0.02

  def setup(self):
    if len(self.strides) != len(self.conv_features):
      raise ValueError(
          f'need one stride per conv layer, got strides '
          f'{self.strides} for features {self.conv_features}'
      )
    if not self.hidden or not self.action_features:
      raise ValueError('hidden and action_features must be non-empty')
    self.convs = [
        nn.Conv(
            f,
            (self.kernel, self.kernel),
            strides=(s, s),
            padding='SAME',
            name=f'conv_{i}',
        )
        for i, (f, s) in enumerate(zip(self.conv_features, self.strides))
    ]
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f'dropout must be in [0, 1), got {self.dropout}')
    self.fuse_image = nn.Dense(self.hidden[0], name='fuse_image')
    self.action_layers = [
        nn.Dense(f, name=f'action_{i}')
        for i, f in enumerate(self.action_features)
    ]
    self.fuse_action = nn.Dense(
        self.hidden[0], use_bias=False, name='fuse_action'
    )
    self.hidden_layers = [
        nn.Dense(h, name=f'hidden_{i + 1}')
        for i, h in enumerate(self.hidden[1:])
    ]
    self.head = nn.Dense(1, name='head')
    if self.coverage_grid:
      self.coverage_conv = nn.Conv(
          self.coverage_features, (3, 3), padding='SAME', name='coverage_conv'
      )

  def _dropout_keep_masks(self, n: int, h: int, w: int):
    """Bernoulli(1 - p) keep masks [n, h_i, w_i, c_i] of all conv layers.

    Drawn with ONE PRNG call from the 'dropout' rng and sliced per layer (same
    distribution as nn.Dropout per layer; one threefry instead of three
    compiles ~3x faster on CPU). Row j of the masks belongs to JH j.
    """
    shapes = []
    for f, s in zip(self.conv_features, self.strides):
      h, w = -(-h // s), -(-w // s)  # SAME padding
      shapes.append((h, w, f))
    sizes = [math.prod(shape) for shape in shapes]
    keep = jax.random.bernoulli(
        self.make_rng('dropout'), 1.0 - self.dropout, (n, sum(sizes))
    )
    masks, offset = [], 0
    for shape, size in zip(shapes, sizes):
      masks.append(keep[:, offset : offset + size].reshape((n,) + shape))
      offset += size
    return masks

  def image_features(self, jh: jnp.ndarray, train: bool) -> jnp.ndarray:
    """JH [..., B, B] -> flattened conv features f [..., F].

    Each conv is followed by ReLU and, in training mode, inverted dropout
    with rate p (kept units scaled by 1 / (1 - p)); eval mode is
    deterministic.
    """
    batch = jh.shape[:-2]
    x = jh.reshape((-1,) + jh.shape[-2:] + (1,)).astype(jnp.float32)
    if self.input_pool > 1:
      p = self.input_pool
      x = nn.avg_pool(x, (p, p), strides=(p, p))
    masks = None
    if train and self.dropout > 0:
      masks = self._dropout_keep_masks(x.shape[0], x.shape[1], x.shape[2])
    for i, conv in enumerate(self.convs):
      x = nn.relu(conv(x))
      if masks is not None:
        x = jnp.where(masks[i], x / (1.0 - self.dropout), 0.0)
    if self.readout_pool > 1:
      p = self.readout_pool
      x = nn.avg_pool(x, (p, p), strides=(p, p))
    return x.reshape(batch + (-1,))

  def encode_jh(self, jh: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """JH [..., B, B] -> image embedding z [..., hidden[0]] (once per JH).

    z is the image half of the first fused layer (W_f f + b). In training
    mode it needs the 'dropout' rng; each leading index gets its own mask.
    """
    z = self.fuse_image(self.image_features(jh, train))
    if not self.coverage_grid:
      return z
    return jnp.concatenate(
        [z, self.coverage_maps(jh).reshape(z.shape[:-1] + (-1,))], axis=-1
    )

  def coverage_maps(self, jh: jnp.ndarray) -> jnp.ndarray:
    """JH [..., B, B] -> maps [..., G, G, 1 + coverage_features]: the JH
    avg-pooled to G x G and ReLU(3x3 conv) maps of it (no dropout)."""
    grid, bins = self.coverage_grid, jh.shape[-1]
    if bins % grid:
      raise ValueError(f'coverage_grid {grid} must divide the JH bins {bins}')
    x = jh.reshape((-1,) + jh.shape[-2:] + (1,)).astype(jnp.float32)
    x = nn.avg_pool(x, (bins // grid,) * 2, strides=(bins // grid,) * 2)
    maps = jnp.concatenate([x, nn.relu(self.coverage_conv(x))], axis=-1)
    return maps.reshape(jh.shape[:-2] + maps.shape[1:])

  def coverage(self, z: jnp.ndarray, actions: jnp.ndarray):
    """(z without the maps [..., H], coverage c [..., 1 + coverage_features])
    of actions [..., n, 2] under z [..., H + G*G*(1 + coverage_features)]."""
    h, grid = self.hidden[0], self.coverage_grid
    maps = z[..., h:].reshape(z.shape[:-1] + (grid, grid, -1))
    mask = coverage_mask(actions, grid, self.coverage_tau)
    c = jnp.sum(mask[..., None] * maps, axis=(-3, -2)) / (grid * grid)
    return z[..., :h], c

  def score(self, z: jnp.ndarray, actions: jnp.ndarray) -> jnp.ndarray:
    """Rewards for actions [..., n, 2] given z [..., hidden[0]] -> [...].

    Leading dimensions broadcast (e.g. z [H] with actions [N, n, 2]).
    Deterministic: no dropout after the encoder.
    """
    if actions.shape[-2:] != (self.n_vertices, 2):
      raise ValueError(
          f'actions must be [..., {self.n_vertices}, 2], got '
          f'{actions.shape}'
      )
    g = 2.0 * actions.reshape(actions.shape[:-2] + (-1,)) - 1.0  # [-1, 1]
    if self.coverage_grid:
      z, c = self.coverage(z, actions)
      # Mean JH values run ~0.1: scaled to the coordinates' size.
      lead = jnp.broadcast_shapes(g.shape[:-1], c.shape[:-1])
      g = jnp.concatenate(
          [
              jnp.broadcast_to(g, lead + g.shape[-1:]),
              jnp.broadcast_to(4.0 * c, lead + c.shape[-1:]),
          ],
          axis=-1,
      )
    for layer in self.action_layers:
      g = nn.relu(layer(g))
    h = nn.relu(z + self.fuse_action(g))
    for layer in self.hidden_layers:
      h = nn.relu(layer(h))
    return self.head(h)[..., 0]

  def __call__(
      self, jh: jnp.ndarray, actions: jnp.ndarray, train: bool = False
  ) -> jnp.ndarray:
    """r(JH, a) for one JH [B, B] and actions [N, n, 2] -> [N] (eq. 3 input)."""
    return self.score(self.encode_jh(jh, train), actions)


def model_from_config(m: ml_collections.ConfigDict) -> RewardModel:
  """RewardModel from a ``config.model`` block (tuples coerced, so the
  module is hashable and a static jit argument)."""
  return RewardModel(
      conv_features=tuple(int(f) for f in m.conv_features),
      kernel=int(m.kernel),
      strides=tuple(int(s) for s in m.strides),
      input_pool=int(m.input_pool),
      readout_pool=int(m.readout_pool),
      action_features=tuple(int(f) for f in m.action_features),
      hidden=tuple(int(h) for h in m.hidden),
      dropout=float(m.dropout),
      n_vertices=int(m.n_vertices),
      coverage_grid=int(m.get('coverage_grid', 0)),
      coverage_features=int(m.get('coverage_features', 3)),
      coverage_tau=float(m.get('coverage_tau', 0.02)),
  )


def init_params(model: RewardModel, key: jax.Array, bins: int) -> dict:
  """Initial parameters for JHs [bins, bins]: PyTorch's default layer init.

  Every kernel and bias of a layer is U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  (torch.nn.Linear / Conv2d defaults; the paper used PyTorch), with fan_in =
  k*k*c_in for convs, d_in for dense layers and F + F_a for BOTH halves of the
  split fused layer (it is one dense layer on the concatenation). All values
  come from ONE uniform draw that is sliced per leaf (in tree order): a
  single PRNG call compiles ~10x faster on CPU than one per layer.
  """
  jh = jnp.zeros((bins, bins), jnp.float32)
  actions = jnp.zeros((1, model.n_vertices, 2), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jh, actions))[
      'params'
  ]
  fused_in = (
      shapes['fuse_image']['kernel'].shape[0]
      + shapes['fuse_action']['kernel'].shape[0]
  )

  def fan_in(layer: str, leaves) -> int:
    if layer in ('fuse_image', 'fuse_action'):
      return fused_in
    return math.prod(leaves['kernel'].shape[:-1])

  flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  total = sum(math.prod(leaf.shape) for _, leaf in flat)
  u = jax.random.uniform(key, (total,), jnp.float32, -1.0, 1.0)
  out, offset = [], 0
  for path, leaf in flat:
    layer = path[0].key
    size = math.prod(leaf.shape)
    bound = 1.0 / math.sqrt(fan_in(layer, shapes[layer]))
    out.append((u[offset : offset + size] * bound).reshape(leaf.shape))
    offset += size
  return jax.tree_util.tree_unflatten(treedef, out)


def encode(
    model: RewardModel,
    params,
    jh: jnp.ndarray,
    train: bool = False,
    rng: Optional[jax.Array] = None,
) -> jnp.ndarray:
  """Functional encode_jh: jh [..., B, B] -> z [..., hidden[0]]."""
  if train and rng is None:
    raise ValueError('training mode needs a dropout rng')
  rngs = {'dropout': rng} if train else {}
  return model.apply(
      {'params': params}, jh, train, method=RewardModel.encode_jh, rngs=rngs
  )


def score(
    model: RewardModel, params, z: jnp.ndarray, actions: jnp.ndarray
) -> jnp.ndarray:
  """Functional score: z [..., H], actions [..., n, 2] -> rewards [...]."""
  return model.apply({'params': params}, z, actions, method=RewardModel.score)


def image_feature_size(model: RewardModel, bins: int) -> int:
  """F, the flattened conv feature size for JHs [bins, bins] (SAME convs)."""
  size = bins // model.input_pool if model.input_pool > 1 else bins
  for s in model.strides:
    size = math.ceil(size / s)
  if model.readout_pool > 1:
    size //= model.readout_pool
  if size < 1:
    raise ValueError(f'JH of {bins} bins is too small for this model')
  return size * size * model.conv_features[-1]


def count_params(params) -> int:
  """Total number of scalars in a parameter pytree."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def expected_param_count(model: RewardModel, bins: int) -> int:
  """The parameter count by hand (conv, concat-dense, dense layers)."""
  total, cin = 0, 1
  for f in model.conv_features:
    total += model.kernel * model.kernel * cin * f + f
    cin = f
  fin = 2 * model.n_vertices
  if model.coverage_grid:
    c = model.coverage_features
    total += 3 * 3 * c + c  # coverage_conv on the pooled JH
    fin += 1 + c  # the coverage c joins the coordinates
  for f in model.action_features:
    total += fin * f + f
    fin = f
  feat = image_feature_size(model, bins)
  total += (feat + fin) * model.hidden[0] + model.hidden[0]  # Dense([f; g])
  hin = model.hidden[0]
  for h in list(model.hidden[1:]) + [1]:
    total += hin * h + h
    hin = h
  return total


def shapes_summary(model: RewardModel, bins: int) -> Tuple[int, int]:
  """(image feature size F, up-scaled action feature size) for a report."""
  return image_feature_size(model, bins), int(model.action_features[-1])
