"""The jobs `launch.py` can run: one explicit dict, name -> fn(config, workdir)."""

from rlhf_tf.jobs import inspect_volume

JOBS = {
    'inspect': inspect_volume.run,
}
