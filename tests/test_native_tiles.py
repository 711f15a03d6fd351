"""native_tiles.next_job: every job of a parallel loop claimed exactly once,
whatever the lanes and threads (rlhf_tf.render.native_tiles)."""

from hypothesis import given, settings
from hypothesis import strategies as st
import numba
import numpy as np

from rlhf_tf.render.native_tiles import next_job


@numba.njit(parallel=True)
def _claim_all(counter, seen, per_lane):
  """Lanes claim jobs 0 .. seen.size - 1 off counter (as the direct
  march's _lanes claims tiles), counting claims per job and per lane."""
  for lane in numba.prange(per_lane.size):
    while True:
      job = next_job(counter)
      if job >= seen.size:
        break
      seen[job] += 1  # Unique job: no other thread writes it.
      per_lane[lane] += 1


def _claims(n_jobs, lanes):
  """(claims per job [n_jobs], jobs per lane [lanes], the counter after)."""
  counter = np.zeros(1, np.int64)
  seen = np.zeros(n_jobs, np.int64)
  per_lane = np.zeros(lanes, np.int64)
  _claim_all(counter, seen, per_lane)
  return seen, per_lane, counter[0]


@settings(max_examples=20, deadline=None)
@given(n_jobs=st.integers(0, 3000), lanes=st.integers(1, 70))
def test_every_job_is_claimed_once(n_jobs, lanes):
  seen, per_lane, after = _claims(n_jobs, lanes)
  np.testing.assert_array_equal(seen, 1)
  assert per_lane.sum() == n_jobs
  assert after == n_jobs + lanes  # Each lane's last claim finds none left.
