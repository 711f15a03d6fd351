"""Many launch.py runs for the price of one start-up.

  python tests/launch_forked.py CASES_JSON

CASES_JSON holds a list of {"argv": [...], "out": PATH, "err": PATH}. This
process imports what launch.py imports (JAX, the jobs: ~5 s of CPU, most of
a launch that stops on bad input), starts no JAX backend and no thread,
then forks one child per case, at most MAX_CHILDREN at a time. Each child
points its stdout and stderr at the case's files and runs launch.py as
``python launch.py ARGV`` would (``runpy.run_path`` as ``__main__``:
launch.py's own flags, checks and error handling); its exit status is the
case's, written to ``out + '.status'``. Every child starts from this
process's state, never from another case's.

tests/test_bad_input_launch.py runs its corpus this way; the other tests
that start launch.py (tests/test_experiments.py, test_multiprocess_launch.py)
start a fresh interpreter each.
"""

import json
import os
import runpy
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_CHILDREN = 4


def _child(case: dict) -> None:
  """Runs one case in this (forked) process; never returns."""
  status = 1
  try:
    for fd, path in ((1, case['out']), (2, case['err'])):
      target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
      os.dup2(target, fd)
      os.close(target)
    sys.argv = ['launch.py', *case['argv']]
    sys.path[0] = ROOT  # as for `python launch.py`: the script's folder
    try:
      runpy.run_path(os.path.join(ROOT, 'launch.py'), run_name='__main__')
      status = 0
    except SystemExit as e:  # what the interpreter does with it
      if e.code is None or isinstance(e.code, int):
        status = e.code or 0
      else:
        print(e.code, file=sys.stderr)
    except BaseException:  # an uncaught exception: traceback, status 1
      sys.excepthook(*sys.exc_info())
  except BaseException:
    traceback.print_exc()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    with open(case['out'] + '.status', 'w') as f:
      f.write(str(status))
    os._exit(status)


def main(cases_json: str) -> None:
  with open(cases_json) as f:
    cases = json.load(f)
  # launch.py's imports, once; no JAX computation here (children fork from
  # a process without XLA's threads).
  import absl.app  # noqa: F401
  import ml_collections.config_flags  # noqa: F401

  import rlhf_tf.devices.distributed  # noqa: F401
  import rlhf_tf.jobs  # noqa: F401

  os.chdir(ROOT)
  running = set()
  for case in cases:
    if len(running) >= MAX_CHILDREN:
      pid, _ = os.wait()
      running.discard(pid)
    pid = os.fork()
    if pid == 0:
      _child(case)
    running.add(pid)
  while running:
    pid, _ = os.wait()
    running.discard(pid)


if __name__ == '__main__':
  main(sys.argv[1])
