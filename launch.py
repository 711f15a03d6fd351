r"""Runs one rlhf_tf experiment.

  python launch.py --experiment=experiments/inspect.py[:arg] --workdir=DIR \
      [--experiment.some.key=value ...]

The experiment file's `get_config(arg)` returns a locked ConfigDict; dotted
flags override its fields (an unknown key is an error listing the valid ones).
`config.job` picks the entry point from the explicit `JOBS` dict.

Several processes / hosts (see BUILD.md): `config.distributed` or the
environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)
start `jax.distributed` before anything else; every process runs the job,
process 0 alone writes results and logs at INFO.
"""

import logging as pylogging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from rlhf_tf.devices import distributed
from rlhf_tf.jobs import JOBS
from rlhf_tf.jobs import experiment_file

_EXPERIMENT = config_flags.DEFINE_config_file(
    'experiment', None, 'Experiment file (experiments/x.py[:arg]).',
    lock_config=True)
FLAGS = flags.FLAGS
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Folder for outputs (figures, checkpoints).')
flags.mark_flags_as_required(['experiment', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _EXPERIMENT.value
  job = config.get('job')
  if job not in JOBS:
    spec = config_flags.get_config_filename(FLAGS['experiment'])
    raise app.UsageError(f'unknown job {job!r} in {spec}; valid jobs: '
                         f'{", ".join(sorted(JOBS))}')
  # Before any JAX computation: a no-op unless several processes are asked.
  distributed.initialize(config.get('distributed'))
  if not distributed.is_primary():
    logging.set_verbosity(logging.WARNING)
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  os.makedirs(workdir, exist_ok=True)
  pylogging.getLogger('jax').setLevel(pylogging.WARNING)
  # Orbax logs several INFO lines per checkpoint save; keep its warnings.
  pylogging.getLogger('absl').addFilter(
      lambda r: r.levelno >= pylogging.WARNING or '/orbax/' not in r.pathname)
  logging.info('job %s, workdir %s\n%s', job, workdir, config)
  JOBS[job](config, workdir)


def parse_flags(argv):
  """absl parsing, after a readable check of the experiment's override keys."""
  spec = experiment_file.spec_in_argv(argv)
  keys = experiment_file.overrides_in_argv(argv)
  if spec and keys:
    try:
      experiment_file.check_override_keys(experiment_file.load_config(spec),
                                          keys)
    except (KeyError, FileNotFoundError) as e:
      sys.exit(f'launch.py: {e.args[0]}')
  return flags.FLAGS(argv)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
