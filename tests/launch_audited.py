"""launch.py with a record of what this process writes under a folder.

  python tests/launch_audited.py AUDIT_JSON WATCHED_DIR [launch.py flags]

Runs launch.py in this interpreter after installing a Python audit hook
(``sys.addaudithook``) that notes every file opened for writing or
creating, every folder made, every rename and removal under WATCHED_DIR;
the list is written to AUDIT_JSON (outside WATCHED_DIR) when the process
ends. tests/test_multiprocess_launch.py runs process 1 of a two-process job
this way to show that it writes nothing but its share of the orbax
checkpoints. What the hook cannot see: writes inside C libraries (SQLite,
tensorstore); processes other than 0 never open the SQLite store
(``dataset.StoreOfProcess0``).
"""

import atexit
import json
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _path(p):
  if isinstance(p, int):  # an open file descriptor: not a path
    return None
  try:
    return os.path.abspath(os.fsdecode(p))
  except TypeError:
    return None


def install(audit_json: str, watched: str) -> list:
  watched = os.path.abspath(watched)
  events = []

  def under(p):
    return p is not None and (p == watched or p.startswith(watched + os.sep))

  def hook(event, args):
    if event == 'open':
      path, mode, flags = args
      writes = any(c in (mode or '') for c in 'wax+') or bool(
          (flags or 0) & _WRITE_FLAGS
      )
      p = _path(path)
      if writes and under(p):
        events.append([event, p])
    elif event == 'os.mkdir':
      p = _path(args[0])
      if under(p) and not os.path.exists(p):  # an existing one: no write
        events.append([event, p])
    elif event in (
        'os.rename',
        'os.remove',
        'os.rmdir',
        'os.truncate',
        'shutil.rmtree',
        'shutil.copyfile',
        'shutil.move',
    ):
      for a in args[:2]:
        p = _path(a) if isinstance(a, (str, bytes, os.PathLike)) else None
        if under(p):
          events.append([event, p])
          break

  def dump():
    with open(audit_json, 'w') as f:
      json.dump(events, f)

  sys.addaudithook(hook)
  atexit.register(dump)
  return events


if __name__ == '__main__':
  audit_json, watched = sys.argv[1], sys.argv[2]
  install(audit_json, watched)
  sys.argv = [os.path.join(ROOT, 'launch.py')] + sys.argv[3:]
  sys.path.insert(0, ROOT)
  runpy.run_path(sys.argv[0], run_name='__main__')
