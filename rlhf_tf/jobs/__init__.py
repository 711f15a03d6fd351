"""The jobs `launch.py` can run: one explicit dict, name -> fn(config, workdir)."""

from rlhf_tf.jobs import collect
from rlhf_tf.jobs import inspect_volume

JOBS = {
    'collect': collect.run,
    'inspect': inspect_volume.run,
}
