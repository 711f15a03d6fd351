"""TensorBoard event files of the per-epoch metrics (tensorboardX).

metrics.jsonl stays the source of truth (it survives kills and resumes, see
train.py); the event files are rewritten from it when a run ends, so
`tensorboard --logdir <workdir>/reward` shows every seed and loss.
"""

from __future__ import annotations

import numbers
import os
import shutil
import struct
from typing import Iterable, List

from tensorboardX import SummaryWriter
from tensorboardX.proto import event_pb2


def write_events(run_dir: str, rows: Iterable[dict]) -> str:
  """Rewrites <run_dir>/tensorboard from metric rows (one per epoch).

  Every finite numeric field except 'epoch' and 'step' becomes a scalar at
  step = the row's epoch. Returns the event folder.
  """
  out = os.path.join(run_dir, 'tensorboard')
  shutil.rmtree(out, ignore_errors=True)
  writer = SummaryWriter(out)
  try:
    for row in rows:
      epoch = int(row['epoch'])
      for name, value in row.items():
        if name in ('epoch', 'step') or not isinstance(value, numbers.Real):
          continue
        writer.add_scalar(name, float(value), epoch)
  finally:
    writer.close()
  return out


def read_scalars(event_dir: str) -> List[tuple]:
  """(tag, step, value) of every scalar in a folder's event files.

  Reads the TFRecord framing (length, crc, payload, crc) directly, so tests
  and users can check a run without installing TensorBoard.
  """
  out = []
  for name in sorted(os.listdir(event_dir)):
    if 'tfevents' not in name:
      continue
    with open(os.path.join(event_dir, name), 'rb') as f:
      data = f.read()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[pos : pos + 8])
      payload = data[pos + 12 : pos + 12 + length]
      pos += 12 + length + 4
      event = event_pb2.Event()
      event.ParseFromString(payload)
      for v in event.summary.value:
        out.append((v.tag, int(event.step), float(v.simple_value)))
  return out
