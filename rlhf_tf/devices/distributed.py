"""Several processes / hosts: ``jax.distributed.initialize`` from config.

JAX runs one process per host (or per GPU); every process runs the same
program on its own devices and the processes together see one global set of
devices (``jax.devices()``), so a mesh over them spans hosts. This module
starts that runtime when asked and otherwise does nothing (one process: the
program behaves exactly as without it).

Config (``config.distributed``, see :func:`default_config`):
  coordinator_address: 'host:port' of process 0 ('' = the environment's
    JAX_COORDINATOR_ADDRESS, else single-process).
  num_processes: total processes (0 = JAX_NUM_PROCESSES from the
    environment).
  process_id: this process, 0 .. num_processes - 1 (-1 = JAX_PROCESS_ID).
  auto_detect: True = let JAX find all three itself (Cloud TPU VMs and
    slices, SLURM, Open MPI): ``jax.distributed.initialize()`` without
    arguments.
  initialization_timeout_s: how long processes wait for each other.

Every process runs the job; process 0 alone writes (``is_primary``) and
alone opens the SQLite preference store; ``on_primary`` runs a read there
and sends its result to the others; ``barrier`` orders process 0's writes
before the others' reads of the workdir.

Must run before anything touches a JAX backend (``launch.py`` calls
:func:`initialize` first). On CPU the cross-process collectives use gloo
(``jax_cpu_collectives_implementation``), which is what two local CPU
processes on 127.0.0.1 need.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from typing import Callable, Optional, TypeVar

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

T = TypeVar('T')

ENV_COORDINATOR = 'JAX_COORDINATOR_ADDRESS'  # JAX reads this one itself too.
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'


def default_config() -> ml_collections.ConfigDict:
  """``config.distributed``: single-process unless set here or in the env."""
  return ml_collections.ConfigDict(
      dict(
          coordinator_address='',
          num_processes=0,
          process_id=-1,
          auto_detect=False,
          initialization_timeout_s=300,
      )
  )


def requested(
    cfg: Optional[ml_collections.ConfigDict] = None, environ=os.environ
) -> Optional[dict]:
  """The ``jax.distributed.initialize`` arguments asked for, or None.

  Config values win over the environment. Several processes are asked for
  when a coordinator address and more than one process are known, or when
  ``auto_detect`` is on (then an empty dict: JAX detects everything).

  Raises:
    ValueError: an address without a process count / id (or the reverse),
      naming the config key and environment variable to set.
  """
  cfg = cfg if cfg is not None else default_config()
  if cfg.get('auto_detect', False):
    return {}
  address = cfg.get('coordinator_address', '') or environ.get(
      ENV_COORDINATOR, ''
  )
  num = int(cfg.get('num_processes', 0) or environ.get(ENV_NUM_PROCESSES, 0))
  pid = int(cfg.get('process_id', -1))
  if pid < 0:
    pid = int(environ.get(ENV_PROCESS_ID, -1))
  if not address and num <= 1:
    return None
  if not address or num < 1 or not 0 <= pid < num:
    raise ValueError(
        f'several processes need distributed.coordinator_address '
        f'(${ENV_COORDINATOR}), distributed.num_processes '
        f'(${ENV_NUM_PROCESSES}) and distributed.process_id '
        f'(${ENV_PROCESS_ID}) in 0..num-1; got '
        f'address {address!r}, num_processes {num}, process_id {pid}'
    )
  if num == 1:
    return None
  return dict(coordinator_address=address, num_processes=num, process_id=pid)


def initialize(cfg: Optional[ml_collections.ConfigDict] = None) -> bool:
  """Starts the multi-process runtime if asked (see :func:`requested`).

  Returns True if this call (or an earlier one) initialised it. Must be
  called before any JAX computation; a second call is a no-op.
  """
  if jax.distributed.is_initialized():
    return True
  args = requested(cfg)
  if args is None:
    return False
  # CPU processes exchange data over gloo (TCP); accelerators use their own
  # collectives (NCCL, ICI) and ignore this option.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  timeout = int((cfg or default_config()).get('initialization_timeout_s', 300))
  jax.distributed.initialize(initialization_timeout=timeout, **args)
  logging.info(
      'process %d of %d, %d local / %d global devices',
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
  )
  return True


def process_count() -> int:
  """Processes of this run (1 unless jax.distributed joined several)."""
  return jax.process_count()


def is_primary() -> bool:
  """True in process 0: the one process that writes figures, summaries,
  the preference store and logs results (every process computes)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all have reached ``barrier(name)``
  (``multihost_utils.sync_global_devices``; a no-op in one process).

  Orders a write by process 0 before the reads of the others, e.g. the
  votes of ``simulate_preferences`` before ``train_reward`` loads them. Every
  process must call it with the same name in the same order (JAX checks
  the name).
  """
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def primary_first(name: str):
  """Runs the ``with`` block in process 0 first, then in the others.

  Process 0 writes (creates a file, registers a scene in the store) and
  passes ``barrier(name)``; the others wait there, then run the same block,
  which finds what process 0 wrote and only reads it. One process: the
  block alone.
  """
  if is_primary():
    yield
    barrier(name)
  else:
    barrier(name)
    yield


def broadcast_from_primary(value):
  """Process 0's ``value`` (anything picklable) in every process; the
  others' argument is ignored. One process: ``value`` itself.

  ``multihost_utils.broadcast_one_to_all`` needs the same shapes
  everywhere, so the pickled bytes travel in two steps: their length, then
  the bytes.
  """
  if jax.process_count() == 1:
    return value
  data = (
      np.frombuffer(pickle.dumps(value), np.uint8)
      if is_primary()
      else np.zeros(0, np.uint8)
  )
  size = int(
      multihost_utils.broadcast_one_to_all(np.array([data.size], np.int32))[0]
  )
  buf = data if is_primary() else np.zeros(size, np.uint8)
  buf = multihost_utils.broadcast_one_to_all(buf)
  return value if is_primary() else pickle.loads(np.asarray(buf).tobytes())


def on_primary(fn: Callable[[], T]) -> T:
  """``fn()`` run in process 0 alone, its result (or the exception it
  raised, raised again) in every process.

  For what only process 0 may touch, e.g. reading the SQLite preference
  store, which other hosts cannot share safely (WAL needs one machine's
  shared memory). Every process must call it at the same point.
  """
  if jax.process_count() == 1:
    return fn()
  outcome = None
  if is_primary():
    try:
      outcome = (True, fn())
    except Exception as e:  # noqa: BLE001 (every process raises it)
      outcome = (False, e)
  ok, value = broadcast_from_primary(outcome)
  if not ok:
    raise value
  return value
