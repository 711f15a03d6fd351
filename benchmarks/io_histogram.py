r"""Time and peak RSS: build a CBCT phantom, write/read it as DICOM, its JH.

  .venv/bin/python benchmarks/io_histogram.py            # 547x421x547 (paper)
  .venv/bin/python benchmarks/io_histogram.py --shape=128,128,128

Prints one JSON object. Each stage runs in its own process so that its peak
RSS (ru_maxrss) is its own: `build` (phantom only), `write` (phantom + DICOM
write), `read` (DICOM read only), `histogram` (DICOM read, then the JH; the JH
time is reported alone). Goals on 2 CPU cores at the paper's size: JH <= 10 s
and peak RSS <= 4 GB; DICOM read <= 20 s.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB


def _stage(stage: str, shape, directory: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top

  from rlhf_tf.data import (
      dicom_io,  # pylint: disable=g-import-not-at-top
      dicom_write,  # pylint: disable=g-import-not-at-top
      phantom,  # pylint: disable=g-import-not-at-top
  )
  from rlhf_tf.render import histogram  # pylint: disable=g-import-not-at-top

  out = {}
  if stage in ('build', 'write'):
    t = time.perf_counter()
    volume = phantom.make_head_phantom(jax.random.key(0), shape=shape)
    out['build_s'] = time.perf_counter() - t
    if stage == 'write':
      t = time.perf_counter()
      dicom_write.write_dicom_series(volume, directory, overwrite=True)
      out['write_s'] = time.perf_counter() - t
  else:
    t = time.perf_counter()
    volume = dicom_io.read_dicom_series(directory)
    out['read_s'] = time.perf_counter() - t
    if stage == 'histogram':
      t = time.perf_counter()
      jh = histogram.joint_histogram(
          volume, bins=256, hu_window=(-1024.0, 3071.0)
      )
      out['histogram_s'] = time.perf_counter() - t
      out['histogram_occupied_bins'] = int((jh.counts > 0).sum())
  out['peak_rss_gb'] = _peak_rss_gb()
  return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--shape', default='547,421,547')
  parser.add_argument('--stage', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--dir', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  shape = tuple(int(s) for s in args.shape.split(','))
  if args.stage:
    print(json.dumps(_stage(args.stage, shape, args.dir)))
    return
  directory = tempfile.mkdtemp(prefix='rlhf_tf_bench_dicom_')
  result = {'shape_zyx': list(shape), 'cpu_count': os.cpu_count()}
  try:
    for stage in ('build', 'write', 'read', 'histogram'):
      proc = subprocess.run(
          [
              sys.executable,
              __file__,
              '--shape',
              args.shape,
              '--stage',
              stage,
              '--dir',
              directory,
          ],
          capture_output=True,
          text=True,
          check=True,
      )
      result[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
  finally:
    shutil.rmtree(directory, ignore_errors=True)
  result['goals'] = {
      'histogram_s<=10': result['histogram']['histogram_s'] <= 10,
      'histogram_peak_rss_gb<=4': result['histogram']['peak_rss_gb'] <= 4,
      'dicom_read_s<=20': result['read']['read_s'] <= 20,
  }
  print(json.dumps(result, indent=2))


if __name__ == '__main__':
  main()
