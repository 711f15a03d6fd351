r"""Runs one rlhf_tf experiment.

  python launch.py --experiment=experiments/inspect.py[:arg] --workdir=DIR \
      [--experiment.some.key=value ...]

The experiment file's `get_config(arg)` returns a locked ConfigDict; dotted
flags override its fields (an unknown key is an error listing the valid ones).
`config.job` picks the entry point from the explicit `JOBS` dict.

Several processes / hosts (see BUILD.md): `config.distributed` or the
environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)
start `jax.distributed` before anything else; every process runs the job,
process 0 alone writes results and logs at INFO (jobs in
`rlhf_tf.jobs.MULTI_PROCESS_JOBS`; the others refuse several processes).

Bad input -- a missing or unreadable file, a bad config value, an invalid
polygon: any `rlhf_tf.input_error.InputError` or a missing file -- ends the
run with one line `error: <message naming the file, key or polygon>` on
stderr and exit status 2. Anything else is a bug and keeps its traceback.
"""

import logging as pylogging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from rlhf_tf.devices import distributed
from rlhf_tf.input_error import InputError
from rlhf_tf.jobs import experiment_file, JOBS, MULTI_PROCESS_JOBS

# What a user's input causes (files named in the message); never a bug.
INPUT_ERRORS = (
    InputError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
INPUT_ERROR_STATUS = 2

_EXPERIMENT = config_flags.DEFINE_config_file(
    'experiment',
    None,
    'Experiment file (experiments/x.py[:arg]).',
    lock_config=True,
)
FLAGS = flags.FLAGS
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Folder for outputs (figures, checkpoints).'
)
flags.mark_flags_as_required(['experiment', 'workdir'])


def fail(message: str) -> None:
  """Ends the run on bad input: one line on stderr, exit status 2."""
  first, _, rest = str(message).partition('\n')
  print(
      f'error: {first}' + (f'\n{rest}' if rest else ''),
      file=sys.stderr,
      flush=True,
  )
  sys.exit(INPUT_ERROR_STATUS)


def main(argv):
  if len(argv) > 1:
    fail(
        f'unexpected arguments: {" ".join(argv[1:])} (flags are '
        f'--experiment=FILE[:arg] --workdir=DIR [--experiment.key=value])'
    )
  config = _EXPERIMENT.value
  job = config.get('job')
  if job not in JOBS:
    spec = config_flags.get_config_filename(FLAGS['experiment'])
    fail(
        f'unknown job {job!r} in {spec}; valid jobs: '
        f'{", ".join(sorted(JOBS))}'
    )
  # Before any JAX computation: a no-op unless several processes are asked.
  distributed.initialize(config.get('distributed'))
  if distributed.process_count() > 1 and job not in MULTI_PROCESS_JOBS:
    fail(
        f'job {job!r} runs in one process; the jobs for several processes '
        f'are {", ".join(sorted(MULTI_PROCESS_JOBS))}'
    )
  if not distributed.is_primary():
    logging.set_verbosity(logging.WARNING)
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  try:
    if distributed.is_primary():  # the others write nothing there
      os.makedirs(workdir, exist_ok=True)
  except (FileExistsError, *INPUT_ERRORS) as e:
    fail(f'--workdir={workdir}: cannot create the folder ({e})')
  pylogging.getLogger('jax').setLevel(pylogging.WARNING)
  # Orbax logs several INFO lines per checkpoint save; keep its warnings.
  pylogging.getLogger('absl').addFilter(
      lambda r: r.levelno >= pylogging.WARNING or '/orbax/' not in r.pathname
  )
  logging.info('job %s, workdir %s\n%s', job, workdir, config)
  try:
    JOBS[job](config, workdir)
  except INPUT_ERRORS as e:
    fail(str(e))


def parse_flags(argv):
  """absl parsing, after a readable check of the experiment file and its
  override keys; bad flags end in one ``error:`` line."""
  spec = experiment_file.spec_in_argv(argv)
  if spec:
    try:
      config = experiment_file.load_config(spec)
    except (KeyError, *INPUT_ERRORS) as e:
      fail(e.args[0] if isinstance(e, KeyError) else str(e))
    except ValueError as e:  # get_config(arg) refusing its arg
      fail(f'{spec}: {e}')
    try:
      experiment_file.check_override_keys(
          config, experiment_file.overrides_in_argv(argv)
      )
    except KeyError as e:
      fail(e.args[0])
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # a value of the wrong type, a missing flag
    fail(f'{e} (see python launch.py --helpfull)')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
