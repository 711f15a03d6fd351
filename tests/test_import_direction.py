"""Data flows one way; no module imports back up the chain, none in a circle.

The guide's chain: volume (data/) -> JH / ray cache -> TF -> image (render/)
-> preference (preferences/) -> reward (reward/) -> figures / agent /
proposal (evaluation/, agent/). export/ (TF tables for the viewers) sits on
render/, ui/ (the voting page) on preferences/; jobs/ drive them all (that
no job imports a job: test_jobs_only_drive.py). input_error.py and devices/
are the ground every package may stand on.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'rlhf_tf'
GROUND = {'input_error', 'devices'}
# Each package and the packages it may import, besides itself and GROUND.
# Siblings at the end of the chain (agent, evaluation) do not import each
# other; a step both need belongs further up.
MAY_IMPORT = {
    'data': set(),
    'render': {'data'},
    'export': {'data', 'render'},
    'preferences': {'data', 'render'},
    'ui': {'data', 'render', 'preferences'},
    'reward': {'data', 'render', 'preferences'},
    'agent': {'data', 'render', 'preferences', 'reward'},
    'evaluation': {'data', 'render', 'export', 'preferences', 'reward'},
    'jobs': {
        'data',
        'render',
        'export',
        'preferences',
        'ui',
        'reward',
        'agent',
        'evaluation',
        'jobs',
    },
}


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = path.relative_to(root.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports_of(path: pathlib.Path, known: set[str]) -> set[str]:
  """The rlhf_tf modules a file imports (anywhere in it, also inside
  functions), ``from package import module`` resolved to the module."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [
          f'{node.module}.{alias.name}'
          if f'{node.module}.{alias.name}' in known
          else node.module
          for alias in node.names
      ]
    else:
      continue
    out.update(n for n in names if n.split('.')[0] == 'rlhf_tf')
  return out


def import_graph(root: pathlib.Path) -> dict[str, set[str]]:
  files = {module_name(p, root): p for p in sorted(root.rglob('*.py'))}
  return {m: imports_of(p, set(files)) for m, p in files.items()}


def top(module: str) -> str:
  """rlhf_tf.reward.model -> 'reward'; rlhf_tf.input_error -> 'input_error'."""
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else ''


def back_imports(graph) -> list[str]:
  bad = []
  for module, imported in sorted(graph.items()):
    package = top(module)
    if package in GROUND or not package:
      allowed = {package, 'input_error'} - {''}
    else:
      allowed = MAY_IMPORT[package] | GROUND | {package}
    bad += [
        f'{module} imports {i}'
        for i in sorted(imported)
        if top(i) and top(i) not in allowed
    ]
  return bad


def circles(graph) -> list[list[str]]:
  """The import circles (strongly connected components of two or more
  modules, or one that imports itself), by Tarjan's algorithm."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in graph:
        continue
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1 or v in graph[v]:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def _fake_package(tmp_path, files: dict) -> pathlib.Path:
  root = tmp_path / 'rlhf_tf'
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return root


def test_the_checks_see_a_back_import_and_a_circle(tmp_path):
  root = _fake_package(
      tmp_path,
      {
          '__init__.py': '',
          'render/__init__.py': '',
          'render/raymarch.py': 'from rlhf_tf.reward import model\n',
          'reward/__init__.py': '',
          'reward/model.py': 'from rlhf_tf.render import raymarch\n',
          'agent/__init__.py': '',
          'agent/ppo.py': 'def f():\n  import rlhf_tf.evaluation.figures\n',
          'evaluation/__init__.py': '',
          'evaluation/figures.py': 'import numpy\n',
      },
  )
  graph = import_graph(root)
  assert graph['rlhf_tf.render.raymarch'] == {'rlhf_tf.reward.model'}
  assert back_imports(graph) == [
      'rlhf_tf.agent.ppo imports rlhf_tf.evaluation.figures',
      'rlhf_tf.render.raymarch imports rlhf_tf.reward.model',
  ]
  assert circles(graph) == [['rlhf_tf.render.raymarch', 'rlhf_tf.reward.model']]


GRAPH = import_graph(PACKAGE)


def test_every_package_is_placed():
  assert len(GRAPH) > 100  # the glob found the package
  packages = {top(m) for m in GRAPH} - GROUND - {''}
  assert packages == set(MAY_IMPORT), (
      f'place the new package(s) {sorted(packages - set(MAY_IMPORT))} '
      'in MAY_IMPORT'
  )


def test_no_module_imports_back_up_the_chain():
  bad = back_imports(GRAPH)
  assert not bad, 'imports against the data flow:\n' + '\n'.join(bad)


def test_no_import_circles():
  found = circles(GRAPH)
  assert not found, f'import circles: {found}'
