"""Devices and processes: the bottom of the import graph.

- :mod:`rlhf_tf.devices.distributed`: ``jax.distributed.initialize`` when the
  config or the environment asks for several processes / hosts;
  ``is_primary`` (only process 0 writes figures, summaries and the store),
  ``barrier`` (process 0's writes before the others' reads) and
  ``on_primary`` (what only process 0 reads, sent to every process).
- :mod:`rlhf_tf.devices.mesh`: the device mesh of ``config.mesh`` (default:
  every device on one ``data`` axis), shardings, padding to the data axis and
  bringing sharded results back to the host.

Nothing here imports another rlhf_tf package; every stage (render, reward,
evaluation, agent, jobs) may import this one.
"""
