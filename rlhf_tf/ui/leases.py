"""Leases of pairs handed to inspectors (``rlhf_tf.ui.pairs``: which pair).

The lease table lives in memory (one ``LeaseTable`` per server process).
Why not SQLite: leases are short-lived and advisory. Losing them on a restart
costs at most one redundant rating of a pair handed out in the last
``lease_seconds``; every vote itself is durable in the store. The server is
one process (waitress threads), so one in-memory table, guarded by a lock,
sees every handout. Running several server processes on one store would
need the table in the store file instead.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, NamedTuple, Optional


class Lease(NamedTuple):
  """A pair handed to one inspector, in the order it was shown."""

  inspector: str
  scene_id: str
  pair_id: int
  left_action: int
  right_action: int
  shown_at: float  # unix seconds, server clock
  expires_at: float


class LeaseTable:
  """Thread-safe in-memory leases, at most one per inspector."""

  def __init__(
      self, lease_seconds: float, clock: Callable[[], float] = time.time
  ):
    if not lease_seconds > 0:
      raise ValueError(f'lease_seconds must be > 0; got {lease_seconds!r}')
    self.lease_seconds = float(lease_seconds)
    self.clock = clock
    self.lock = threading.RLock()  # callers hold it across select + grant
    self._by_inspector: dict[str, Lease] = {}

  def _live(self) -> dict[str, Lease]:
    """Drop expired leases; the live ones by inspector."""
    now = self.clock()
    expired = [k for k, v in self._by_inspector.items() if v.expires_at <= now]
    for k in expired:
      del self._by_inspector[k]
    return self._by_inspector

  def current(self, inspector: str) -> Optional[Lease]:
    with self.lock:
      return self._live().get(inspector)

  def holders(self) -> dict[tuple[str, int], set[str]]:
    """{(scene, pair): inspectors holding a live lease on it}."""
    out: dict[tuple[str, int], set[str]] = {}
    with self.lock:
      for lease in self._live().values():
        out.setdefault((lease.scene_id, lease.pair_id), set()).add(
            lease.inspector
        )
    return out

  def grant(
      self,
      inspector: str,
      scene_id: str,
      pair_id: int,
      left_action: int,
      right_action: int,
  ) -> Lease:
    """Lease a pair to an inspector (replacing the inspector's old lease)."""
    now = self.clock()
    lease = Lease(
        inspector,
        scene_id,
        int(pair_id),
        int(left_action),
        int(right_action),
        now,
        now + self.lease_seconds,
    )
    with self.lock:
      self._by_inspector[inspector] = lease
    return lease

  def release(
      self,
      inspector: str,
      scene_id: Optional[str] = None,
      pair_id: Optional[int] = None,
  ):
    """End the inspector's lease (only if it is on this pair, when given)."""
    with self.lock:
      lease = self._by_inspector.get(inspector)
      if lease is None:
        return
      if scene_id is None or (lease.scene_id, lease.pair_id) == (
          scene_id,
          pair_id,
      ):
        del self._by_inspector[inspector]
