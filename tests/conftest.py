"""Collection rules shared by every test file.

tests/sharded/ needs several JAX devices, which on a CPU exist only when
XLA_FLAGS=--xla_force_host_platform_device_count=N is set before JAX starts;
tests/test_sharding.py runs that folder in such a subprocess. Without the
flag it is not collected (its tests would see one device).
"""

import os

if '--xla_force_host_platform_device_count' not in os.environ.get(
    'XLA_FLAGS', ''):
  collect_ignore = ['sharded']
