"""One process of the two-process run of tests/test_multiprocess.py.

  python tests/multiprocess_worker.py PROCESS_ID PORT OUT_DIR

Joins a 2-process JAX runtime on 127.0.0.1:PORT (CPU collectives over
gloo), builds the default mesh over the devices of both processes and runs
the sharded paths on it: the 20,000 random-action rewards, the corner maps
and a 2-epoch reward training (orbax checkpoints written by both processes
together), and the same training stopped after epoch 1 and resumed from its
checkpoint (restored onto the mesh), which must reach the same state.
Process 0 writes what it got to OUT_DIR/results.npz; every process must get
the same numbers (checked by comparing with the other). Also checks
distributed.on_primary (a result and an exception sent from process 0).
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ml_collections  # noqa: E402

from rlhf_tf.devices import distributed  # noqa: E402
from rlhf_tf.devices import mesh as mesh_lib  # noqa: E402


def main(process_id: int, port: int, out_dir: str):
  distributed.initialize(
      ml_collections.ConfigDict(
          dict(
              coordinator_address=f'127.0.0.1:{port}',
              num_processes=2,
              process_id=process_id,
              auto_detect=False,
              initialization_timeout_s=120,
          )
      )
  )
  import jax  # noqa: E402  (after initialize, as any JAX use must be)
  from jax.experimental import multihost_utils  # noqa: E402
  import multiprocess_reference as ref  # noqa: E402
  import numpy as np  # noqa: E402

  mesh = mesh_lib.make_mesh()
  assert jax.process_count() == 2 and mesh.devices.size == 4, mesh
  # on_primary: process 0's result, or its exception, in both processes.
  got = distributed.on_primary(
      lambda: dict(process=jax.process_index(), rows=np.arange(70000))
  )
  assert got['process'] == 0 and got['rows'][-1] == 69999, got
  try:
    distributed.on_primary(lambda: int('not a number in process 0'))
  except ValueError as e:
    assert 'not a number in process 0' in str(e), e
  else:
    raise AssertionError("on_primary did not raise process 0's error")
  out = ref.sharded_paths(mesh, os.path.join(out_dir, 'train'))
  # Stopped after epoch 1 and resumed from the orbax checkpoint (restored
  # by both processes onto the 4-device mesh): the same run.
  resumed = ref.train_resumed(mesh, os.path.join(out_dir, 'resumed'))
  assert resumed['runs'] == out['summary'], (resumed['runs'], out['summary'])
  ref.assert_same_params(
      os.path.join(out_dir, 'train'), os.path.join(out_dir, 'resumed')
  )
  # Both processes hold the same replicated numbers.
  gathered = multihost_utils.process_allgather(out['rewards'])
  np.testing.assert_array_equal(gathered[0], gathered[1])
  if distributed.is_primary():
    np.savez(
        os.path.join(out_dir, 'results.npz'),
        **{k: v for k, v in out.items() if k != 'summary'},
    )
    with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
      json.dump(out['summary'], f)


if __name__ == '__main__':
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
