"""The renderer's numba kernels compiled the users' way: helpers inlined at
numba's level (rlhf_tf/render/native_inline.py, INLINE='always').

The other tests run with RLHF_TF_NUMBA_INLINE=never (tests/conftest.py: the
kernels compile about four times faster). Here a subprocess renders the same
scene in the other mode, with a numba cache of its own, and its image must
match this process's bit for bit: a cached render, pre-integrated with
structure-tensor shading (the jobs' renderer), in float32.

Session 19 compared more once (direct and cached renders, point-sampled and
pre-integrated, and each one's gradient w.r.t. the TF table: all bit for
bit), but compiling all of them the 'always' way takes six minutes of CPU,
and this one about a minute: the one every CI run pays for.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from render_testing import AXES, random_table, smooth_volume, SPACING

from rlhf_tf.render import cached_render, native_inline, ray_cache, raymarch
from rlhf_tf.render import camera as camera_lib

pytestmark = pytest.mark.subprocesses  # tests/conftest.py queues it mid-run

SETTINGS = raymarch.RenderSettings(
    step_mm=0.9,
    background=(0.1, 0.2, 0.3),
    preintegrate=True,
    tensor_normals=True,
)


def render() -> np.ndarray:
  """A cached render of a 12x12 view of a smooth 12^3 volume, [12, 12, 4]."""
  shape = (12, 12, 12)
  hu = smooth_volume(shape, seed=3)
  table = random_table(16, seed=4, alpha_max=0.3)
  cam = camera_lib.orbit_camera(
      shape, SPACING, 35.0, 20.0, width=12, height=12, projection='perspective'
  )
  cache = ray_cache.build_ray_cache(hu, None, SPACING, AXES, cam, 16, SETTINGS)
  return np.asarray(cached_render.render_cached(cache, table, SETTINGS))


def test_inlined_kernels_render_bit_for_bit_the_same(tmp_path):
  other = 'always' if native_inline.INLINE == 'never' else 'never'
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(
      os.environ,
      RLHF_TF_NUMBA_INLINE=other,
      NUMBA_CACHE_DIR=str(tmp_path / 'numba_cache'),
      PYTHONPATH=os.pathsep.join([root, os.environ.get('PYTHONPATH', '')]),
  )
  path = tmp_path / 'image.npy'
  code = (
      'import sys, numpy, test_native_inline as t;'
      'numpy.save(sys.argv[1], t.render())'
  )
  subprocess.run(
      [sys.executable, '-c', code, str(path)],
      cwd=os.path.dirname(os.path.abspath(__file__)),
      env=env,
      check=True,
      timeout=900,
  )
  ours = render()
  assert 0.1 < ours[..., 3].mean() < 0.9  # neither empty nor opaque
  np.testing.assert_array_equal(np.load(path), ours)
