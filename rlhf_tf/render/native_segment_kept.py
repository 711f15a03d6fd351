"""A classified segment in the native pre-integrated adjoint: what it keeps
of the segment's forward, its four pieces' table reads
(``native_segment_math.piece_lookup`` means; recorded by the forward
walker under the gradient, so the adjoint does not read the (P, V) table
again), their optics (``kept_optics``) and their reverse
(``segment_adjoint``).

The adjoint (``native_segment_adjoint``) needs, per classified segment, its
split (``native_segment_plan.split``, recomputed: ~3 % of its time) and its
pieces' means, from which ``kept_optics`` gives their optics. Reading the
means again (``segment_forward_kept``: four pieces' random table rows, and
their optics) was ~20 % of its time on Cranium 256^2. Under the custom
VJP's forward rule (``cached_native_segments.table_image``) the forward
walker (``native_segment_forward``) writes each classified segment it
composites, in its walk's order, into the arena of its worker:

  res [capacity, 4 * W], the table's dtype: piece k's means at k W ..
      k W + W - 1 (W = 6 shaded: mean_0..3, V_0 at f and b; W = 4
      unshaded, which reads no V_0);
  keys [capacity] int32: i * GROUP + m (segment i of the group's ray m);
  span [jobs, 2] int32: a group's (job's) first record and count.

The arena is the process's one ``Arena``, reused from call to call (the
forward returns a ticket for it). Worker w of the forward's owns records
w * capacity // workers onward; when its arena is full it records no more
(the adjoint reads the rest again).
The adjoint walks each group's rays in the forward's order (block by block,
ray by ray, segment by segment) and takes the group's records in turn: a
record whose key is the segment's gives its means; past the group's count,
or on a key that is not the segment's (the walks disagree: never seen), it
reads the table (``segment_forward_kept``) for the rest of the group. The
means are stored in the table's dtype: with a float32 table the cotangent
is the recomputing adjoint's up to float32 rounding of the means (float64
arithmetic on float32 table values); with a float64 table, bit for bit.

A plain render records nothing: its walk is compiled without the
records' code (kept None, pruned by numba).

Cranium 256^2, pre-integrated + tensor_normals, demo TF (751k classified
segments: 72 MB of records shaded, 49 MB unshaded, in a 100 / 68 MB arena),
one thread, paired ratios against recomputing (9 reps): adjoint x 0.88
shaded, x 0.83 unshaded; forward with records x 1.13 / 1.09 of the plain one
(which is unchanged: x 1.02 / 0.98); both x 0.95 / 0.92. The whole gradient
(jax.grad of the cached render's mean, 2 threads, 9 reps alternated with
main's adjoint): x 0.985 / 0.88 (the arena is a fresh XLA buffer per call;
reused since, ``Arena``: x 0.853 / 0.875 at one thread, 9 reps,
/tmp/grad_ab/ab.py). Tried and not kept: variable-length records (only the
pieces of non-zero length, the key with a mask of them stored among the
values: 44.5 / 30.6 MB used, in a 76 / 52 MB arena): the adjoint no faster,
the forward with records x 1.14 / 1.12 and the plain forward x 1.03-1.06
(the longer record code in its loop; paired, 9-11 reps).
"""

from __future__ import annotations

import numba
import numpy as np

from rlhf_tf.render.native_inline import HELPER
from rlhf_tf.render.native_layout import GROUP
from rlhf_tf.render.native_segment_math import piece_adjoint, piece_optics
from rlhf_tf.render.native_segment_plan import _lookup, NUM_PIECES

# Records per ray of the cache on average (the forward's arena; Cranium
# 256^2, demo TF: 11.5 classified segments per ray, 17 median among the
# 39 % of rays that meet any, at most 181).
PER_RAY = 16


def capacity(rays):
  """The arena's records for a cache of rays rays (padding included)."""
  return PER_RAY * rays


def width(shading):
  """Values per record: 4 pieces' means (``piece_lookup``: 6 shaded, 4
  unshaded)."""
  return NUM_PIECES * (6 if shading else 4)


class Arena:
  """The process's one arena of records (res, keys, span), reused from
  call to call: a fresh ~100 MB XLA output per gradient cost the forward
  its page faults (Cranium 256^2: the records' forward x 1.59 of the plain
  one at one thread, ~55 ms of it faulting the arena's pages in). The
  forward writes it and returns a ticket ([1] int32, its generation); the
  adjoint gets the records only if no forward wrote the arena since that
  one (``recall_arena``), else ``empty`` (it reads the table: the same
  cotangent up to the means' rounding). A new shape or dtype replaces the
  arena (at most one is held). Callers hold native_lock.LOCK: the writer
  and the generation test are one critical section."""

  arrays = None
  shape = None
  generation = 0


def take_arena(records, w, dtype, jobs):
  """(res [records, w], keys [records], span [jobs, 2]) of the reused
  arena for a forward and its ticket [1] int32 (a new generation); under
  native_lock.LOCK."""
  shape = (records, w, np.dtype(dtype), jobs)
  if Arena.shape != shape:
    Arena.arrays = None  # Freed before the next is allocated.
    Arena.arrays = (
        np.empty((records, w), dtype),
        np.empty(records, np.int32),
        np.empty((jobs, 2), np.int32),
    )
    Arena.shape = shape
  Arena.generation = (Arena.generation + 1) % (1 << 31)
  return Arena.arrays, np.int32(Arena.generation)


def recall_arena(ticket, dtype):
  """The arena's records if ticket (take_arena's) is its generation still,
  else ``empty(dtype)``; under native_lock.LOCK."""
  if Arena.arrays is not None and int(ticket) == Arena.generation:
    return Arena.arrays
  return empty(dtype)


def empty(dtype):
  """(res, keys, span) holding no record: an adjoint that reads the table
  for every segment."""
  return (
      np.zeros((0, width(False)), dtype),
      np.zeros(0, np.int32),
      np.zeros((0, 2), np.int32),
  )


@numba.njit(**HELPER)
def key(i, m):
  """The record key of segment i (from the ray's first row) of ray m."""
  return np.int32(i * GROUP + m)


@numba.njit(**HELPER)
def _put(res, at, o, w, mean):
  res[at, o] = mean[0]
  res[at, o + 1] = mean[1]
  res[at, o + 2] = mean[2]
  res[at, o + 3] = mean[3]
  if w == 6:
    res[at, o + 4] = mean[4]
    res[at, o + 5] = mean[5]


@numba.njit(**HELPER)
def record(res, keys, at, end, means, k):
  """Writes a segment's means (4 piece_lookup tuples) and key k at record
  at if at < end; returns the next free record."""
  if at >= end:
    return at
  w = res.shape[1] // NUM_PIECES
  m0, m1, m2, m3 = means
  _put(res, at, 0, w, m0)
  _put(res, at, w, w, m1)
  _put(res, at, 2 * w, w, m2)
  _put(res, at, 3 * w, w, m3)
  keys[at] = k
  return at + 1


@numba.njit(**HELPER)
def recall(res, keys, at, end, k, kept):
  """Whether record at (< end) is segment k's; then kept [4, 6] holds its
  pieces' means (columns 4, 5 only shaded)."""
  if at >= end or keys[at] != k:
    return False
  w = res.shape[1] // NUM_PIECES
  for p in range(NUM_PIECES):
    for c in range(w):
      kept[p, c] = res[at, p * w + c]
  return True


@numba.njit(**HELPER)
def kept_optics(points, lengths, optics, e, kept):
  """native_segment_plan.segment_forward's optics from the pieces' means
  in kept [4, 6]: fills e [5, 4], returns lt."""
  shading, ka, kd, ks = optics
  lt = 0.0
  e[4, 0] = e[4, 1] = e[4, 2] = 0.0
  trans = 1.0
  for k in range(NUM_PIECES):
    if lengths[k] == 0.0:
      e[k, 0] = e[k, 1] = e[k, 2] = e[k, 3] = 0.0
      continue
    means = (kept[k, 0], kept[k, 1], kept[k, 2], kept[k, 3], kept[k, 4],
             kept[k, 5])  # fmt: skip
    lt += piece_optics(means, points, k, lengths[k], shading, ka, kd, ks, e)
    for c in range(3):
      e[4, c] += trans * e[k, c]
    trans *= 1.0 - e[k, 3]  # exp(lt_k).
  e[4, 3] = 1.0 - trans
  return lt


@numba.njit(**HELPER)
def segment_forward_kept(
    table, bins_x, bins_y, points, lengths, optics, e, kept
):
  """native_segment_plan.segment_forward (e [5, 4], returns lt; every
  piece's lookup first, then their optics) that keeps each piece's
  piece_lookup means in kept [4, 6] for segment_adjoint: the table is read
  once per piece in the reverse pass."""
  means = (
      _lookup(table, bins_x, bins_y, points, lengths, 0),
      _lookup(table, bins_x, bins_y, points, lengths, 1),
      _lookup(table, bins_x, bins_y, points, lengths, 2),
      _lookup(table, bins_x, bins_y, points, lengths, 3),
  )
  for k in range(NUM_PIECES):
    for c in range(6):
      kept[k, c] = means[k][c]
  return kept_optics(points, lengths, optics, e, kept)


@numba.njit(**HELPER)
def segment_adjoint(
    bins_x, bins_y, points, lengths, optics, e, kept, g_e, g_lt, acc, g_piece
):
  """Adds the segment's cotangent into acc [bins, 8] from those of its e
  (g_e [3]) and lt (g_lt), with segment_forward_kept's e [5, 4] and kept
  [4, 6] (native_segment_plan: the reverse's formulas). g_piece: [3]
  scratch."""
  shading, ka, kd, ks = optics
  behind = 0.0  # sum_{j>k} T_j g_e . e_j.
  for k in range(NUM_PIECES - 1, -1, -1):
    trans_k = 1.0  # T_k, in segment_forward's order.
    for j in range(k):
      trans_k *= 1.0 - e[j, 3]
    dot = 0.0
    for c in range(3):
      dot += g_e[c] * e[k, c]
      g_piece[c] = trans_k * g_e[c]
    if lengths[k] != 0.0:
      piece_adjoint(
          bins_x,
          bins_y,
          points,
          k,
          lengths[k],
          shading,
          ka,
          kd,
          ks,
          kept,
          e[k, 3],
          g_piece,
          g_lt + behind,
          acc,
      )
    behind += trans_k * dot
