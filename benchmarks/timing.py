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


def time_in_turn(fns, rounds: int):
  """Medians (seconds) of ``rounds`` calls of each of fns, called in turn
  (fns[0], fns[1], ..., fns[0], ...) after one call each: the machine's
  speed drifts within seconds, and alternating shares the drift between
  them, so their ratios hold where each alone would not."""
  for fn in fns:
    jax.block_until_ready(fn())
  runs = [[] for _ in fns]
  for _ in range(rounds):
    for fn, out in zip(fns, runs):
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      out.append(time.perf_counter() - t0)
  return [statistics.median(r) for r in runs]
