"""Timing of jitted calls for the benchmark scripts."""

import statistics
import time

import jax


def time_calls(fn, repeats: int):
  """(first call incl. compilation, median of ``repeats`` later calls, the
  later calls), in seconds; every call ends with ``block_until_ready``."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  runs = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    runs.append(time.perf_counter() - t0)
  return first, statistics.median(runs), runs
