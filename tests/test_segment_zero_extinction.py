"""A split segment that ``native_segment_plan.transparent`` flags adds
exactly nothing when classified (``segment_forward``): e = 0, lt = 0, the
same floats a skipped one adds. The direct march relies on it: it
classifies such segments instead of testing them
(``direct_segment_kernels``). Hypothesis draws tables with zero-extinction
column bands and segments in and around them."""

from hypothesis import given, settings
from hypothesis import strategies as st
import jax.numpy as jnp
import numpy as np

from rlhf_tf.render import preintegration
from rlhf_tf.render.native_segment_plan import (
    occupancy,
    segment_forward,
    transparent,
)

BINS_Y, BINS_X = 6, 9


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    band=st.tuples(st.integers(0, BINS_X - 1), st.integers(1, BINS_X)),
    shading=st.booleans(),
)
def test_a_transparent_segment_classifies_to_exactly_nothing(
    seed, band, shading
):
  rng = np.random.default_rng(seed)
  lo, width = band
  hi = min(lo + width, BINS_X)
  rgba = rng.uniform(0.05, 0.95, (BINS_Y, BINS_X, 4))
  rgba[:, lo:hi, 3] = 0.0  # Columns of zero extinction, every row.
  table = preintegration.segment_table(jnp.asarray(rgba, jnp.float32), 0.7)
  table = np.asarray(table, np.float64).reshape(-1, 8)
  sat = occupancy(table, BINS_X)
  e = np.zeros((5, 4))
  hits = 0
  for _ in range(40):
    points = np.zeros((5, 4))
    points[:, 0] = rng.uniform(lo - 0.5, hi + 0.5, 5).clip(0.0, BINS_X)
    points[:, 1] = rng.uniform(0.0, BINS_Y - 1.0, 5)
    points[:, 2:] = rng.uniform(0.0, 1.0, (5, 2))
    lengths = rng.uniform(0.0, 0.8, 4) * (rng.uniform(size=4) < 0.8)
    if not transparent(sat, BINS_X, BINS_Y, points, lengths):
      continue
    hits += 1
    e[:] = np.nan
    optics = (shading, 0.2, 0.6, 0.3)
    lt = segment_forward(table, BINS_X, BINS_Y, points, lengths, optics, e)
    assert lt == 0.0
    assert np.all(e[4] == 0.0), e
  assert hits > 0 or hi - lo < 2
