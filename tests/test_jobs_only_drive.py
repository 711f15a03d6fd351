"""Jobs only drive: no job module imports another job module.

A step two jobs share belongs in the library (preferences/, reward/,
evaluation/, agent/), where both call it; the jobs compose library calls.
Only the registry (jobs/__init__.py) imports the job modules.
"""

import ast
import pathlib

import pytest

JOBS_DIR = pathlib.Path(__file__).resolve().parents[1] / 'rlhf_tf' / 'jobs'
# Not a job: the experiment-file loader that launch.py and the tests use.
NOT_JOBS = {'__init__', 'experiment_file'}
JOB_MODULES = sorted(
    p.stem for p in JOBS_DIR.glob('*.py') if p.stem not in NOT_JOBS
)


def imported_modules(path: pathlib.Path) -> set[str]:
  """Every module an `import x` / `from x import y` names, with `from
  package import module` resolved to package.module."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      out.add(node.module)
      out.update(f'{node.module}.{alias.name}' for alias in node.names)
  return out


def test_the_check_sees_a_job_importing_a_job(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text(
      'from rlhf_tf.jobs import reward as reward_job\n'
      'import rlhf_tf.jobs.simulate\n'
  )
  jobs = {f'rlhf_tf.jobs.{m}' for m in JOB_MODULES}
  assert imported_modules(bad) & jobs == {
      'rlhf_tf.jobs.reward',
      'rlhf_tf.jobs.simulate',
  }


@pytest.mark.parametrize('name', JOB_MODULES)
def test_no_job_imports_another_job(name):
  assert len(JOB_MODULES) >= 10  # the glob found the jobs
  jobs = {f'rlhf_tf.jobs.{m}' for m in JOB_MODULES}
  found = imported_modules(JOBS_DIR / f'{name}.py') & jobs
  assert not found, (
      f'rlhf_tf/jobs/{name}.py imports the job(s) '
      f'{sorted(found)}: move the shared step into the library'
  )
