"""The device mesh of ``config.mesh`` and the helpers every sharded path uses.

A mesh names the axes over which work is split. This project splits work
one way, over independent items (actions, rays, preference pairs,
environments), on the ``data`` axis; ``config.mesh`` may also name more axes
for a later model-parallel split. Default: every device (of every process)
on ``data``. With one device every sharded path runs the plain program.

Config (``config.mesh``, see :func:`default_config`):
  axes: axis names, e.g. ('data',).
  shape: devices per axis; one entry may be -1 = all remaining devices.

Sharded paths use JAX's own machinery: a ``jax.sharding.Mesh``,
``NamedSharding`` / ``PartitionSpec`` and ``jax.shard_map`` (each device
runs the per-item program on its slice; collectives such as
``lax.pmean`` over 'data' where items must agree, e.g. gradients).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

DATA = 'data'


def default_config() -> ml_collections.ConfigDict:
  """``config.mesh``: every device on one 'data' axis."""
  return ml_collections.ConfigDict(dict(axes=(DATA,), shape=(-1,)))


def mesh_shape(shape: Sequence[int], num_devices: int) -> tuple:
  """``shape`` with its -1 entry resolved so that the product is
  ``num_devices``; ValueError naming config.mesh.shape otherwise."""
  shape = tuple(int(s) for s in shape)
  free = [i for i, s in enumerate(shape) if s == -1]
  fixed = math.prod(s for s in shape if s != -1)
  if (
      len(free) > 1
      or any(s == 0 or s < -1 for s in shape)
      or (num_devices % fixed if free else fixed > num_devices)
  ):
    raise ValueError(
        f'config.mesh.shape {shape} does not fit '
        f'{num_devices} devices (at most one -1)'
    )
  if free:
    shape = shape[: free[0]] + (num_devices // fixed,) + shape[free[0] + 1 :]
  return shape


def make_mesh(
    cfg: Optional[ml_collections.ConfigDict] = None,
    devices: Optional[Sequence[jax.Device]] = None,
) -> Mesh:
  """The mesh of ``config.mesh`` over ``devices`` (default: all devices of
  all processes, ``jax.devices()``); a shape using fewer devices takes the
  first ones.
  """
  cfg = cfg if cfg is not None else default_config()
  axes = tuple(str(a) for a in cfg.axes)
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(cfg.shape, len(devices))
  if len(shape) != len(axes):
    raise ValueError(
        f'config.mesh.shape {tuple(cfg.shape)} and axes {axes} '
        f'differ in length'
    )
  if DATA not in axes:
    raise ValueError(f'config.mesh.axes {axes} must include {DATA!r}')
  return jax.make_mesh(
      shape,
      axes,
      axis_types=(AxisType.Auto,) * len(axes),
      devices=devices[: math.prod(shape)],
  )


def local_mesh(num_devices: Optional[int] = None) -> Mesh:
  """A 'data' mesh over this process's first ``num_devices`` devices
  (default all local ones); for tests and benchmarks."""
  devices = jax.local_devices()
  n = len(devices) if num_devices is None else int(num_devices)
  return make_mesh(
      ml_collections.ConfigDict(dict(axes=(DATA,), shape=(n,))), devices[:n]
  )


def data_size(mesh: Optional[Mesh]) -> int:
  """Devices along 'data' (1 without a mesh)."""
  return 1 if mesh is None else int(mesh.shape[DATA])


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Leading axis split over 'data', the rest replicated."""
  return NamedSharding(mesh, P(DATA))


def replicate(tree, mesh: Optional[Mesh]):
  """Every leaf on every device of the mesh (the same value everywhere);
  without a mesh, the tree unchanged.

  In several processes each passes the same value: numpy arrays as they
  are; an array on this process's devices (a loaded checkpoint, a ray
  cache) goes through host memory, as ``device_put`` moves nothing between
  hosts; a typed PRNG key (no numpy form) as its key data.
  """
  if mesh is None:
    return tree
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree_util.tree_map(lambda x: _replicate_leaf(x, sharding), tree)


def _replicate_leaf(x, sharding: NamedSharding):
  if isinstance(x, jax.Array):
    if not x.is_fully_addressable:  # already a global array: reshard
      return jax.jit(lambda a: a, out_shardings=sharding)(x)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      data = jax.device_put(np.asarray(jax.random.key_data(x)), sharding)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    x = np.asarray(x)
  return jax.device_put(x, sharding)


def padded_size(num: int, multiple: int) -> int:
  return -(-int(num) // int(multiple)) * int(multiple)


def pad_leading(x, multiple: int):
  """x [N, ...] padded to a multiple of ``multiple`` rows by repeating its
  last row (real values: padding never meets a degenerate input); the
  caller drops rows N.. of the result. Works on numpy and traced arrays."""
  num = x.shape[0]
  pad = padded_size(num, multiple) - num
  if not pad:
    return x
  xp = jnp if isinstance(x, jax.Array) else np
  return xp.concatenate([x, xp.repeat(x[-1:], pad, axis=0)], axis=0)


def to_host(x) -> np.ndarray:
  """A (possibly sharded, possibly multi-process) array as one numpy array,
  the same in every process (a collective: every process must call it)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)
