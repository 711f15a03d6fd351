"""open_in_slicer.py, the script the export writes for 3D Slicer.

3D Slicer is not installable on the build machine, so this is NOT a Slicer
test. It checks what can be checked without it: the script compiles, reads
only the files written beside it (which our own readers load), and makes
only the Slicer calls below, in this order, with those files. The calls are
run against a recording stand-in for the ``slicer`` module, executed the way
Slicer's ``--python-script`` runs a file (CTK's
ctkAbstractPythonManager::executeFile: exec with ``__file__`` set).

Where each call is documented (Slicer/Slicer sources):
- slicer.util.loadVolume(path): script repository, volumes.md "Load volume
  from file".
- slicer.util.loadNodeFromFile(path, 'TransferFunctionFile'):
  Base/Python/slicer/util.py; the file type is vtkSlicerVolumeRenderingReader's
  (name filters *.vp and *.vp.json).
- slicer.modules.volumerendering.logic().CreateDefaultVolumeRenderingNodes
  (volume), displayNode.GetVolumePropertyNode().Copy(node),
  displayNode.SetVisibility(True): volumes.md "Show volume rendering
  automatically when a volume is loaded".
- slicer.util.resetThreeDViews(): Base/Python/slicer/util.py.
"""

import ast
import os
import py_compile
import sys
import types

import jax
import nrrd
import numpy as np
import pytest

from rlhf_tf.data import phantom
from rlhf_tf.export import bundle, tables
from rlhf_tf.export import slicer as slicer_io
from rlhf_tf.render.histogram import JHAxes

DOCUMENTED_CALLS = [
    'slicer.util.loadVolume',
    'slicer.util.loadNodeFromFile',
    'slicer.modules.volumerendering.logic',
    'logic.CreateDefaultVolumeRenderingNodes',
    'display.GetVolumePropertyNode',
    'volume_property_node.Copy',
    'display.SetVisibility',
    'slicer.util.resetThreeDViews',
]


class _Node:
  """A recorded MRML node stand-in: every method call is logged."""

  def __init__(self, name, log):
    self.name, self.log = name, log

  def __getattr__(self, method):
    def call(*args):
      self.log.append((f'{self.name}.{method}', args))
      if method == 'CreateDefaultVolumeRenderingNodes':
        return _Node('display', self.log)
      if method == 'GetVolumePropertyNode':
        return _Node('volume_property_node', self.log)
      return None

    return call


def _recording_slicer(log, files_seen):
  def load_volume(path):
    log.append(('slicer.util.loadVolume', (path,)))
    files_seen.append(path)
    return _Node('volume_node', log)

  def load_node_from_file(path, filetype):
    log.append(('slicer.util.loadNodeFromFile', (path, filetype)))
    files_seen.append(path)
    return _Node('loaded_property_node', log)

  def logic():
    log.append(('slicer.modules.volumerendering.logic', ()))
    return _Node('logic', log)

  module = types.ModuleType('slicer')
  module.util = types.SimpleNamespace(
      loadVolume=load_volume,
      loadNodeFromFile=load_node_from_file,
      resetThreeDViews=lambda: log.append(('slicer.util.resetThreeDViews', ())),
  )
  module.modules = types.SimpleNamespace(
      volumerendering=types.SimpleNamespace(logic=logic)
  )
  return module


def _run_like_slicer(script, fake, monkeypatch):
  monkeypatch.setitem(sys.modules, 'slicer', fake)
  with open(script) as f:
    code = compile(f.read(), script, 'exec')
  exec(code, {'__file__': script, '__name__': '__main__'})  # pylint: disable=exec-used


@pytest.fixture(scope='module')
def export_folder(tmp_path_factory):
  """The export of a rectangle TF with a small phantom volume."""
  folder = tmp_path_factory.mktemp('export')
  vol = phantom.make_head_phantom(jax.random.key(0), shape=(16, 20, 24))
  axes = JHAxes(hu_min=-1024.0, hu_max=3071.0, grad_max=400.0)
  rect = np.array([[0.4, 0.0], [0.7, 0.0], [0.7, 1.0], [0.4, 1.0]])
  table = tables.polygon_table(
      rect,
      axes,
      32,
      tau=0.02,
      alpha_max=0.8,
      unit_distance_mm=1.0,
      name='rectangle',
  )
  jh = types.SimpleNamespace(image=np.ones((32, 32)), counts=np.ones((32, 32)))
  out = bundle.write_exports(
      str(folder), table, jh, 1.0, tables.Shading(), volume=vol
  )
  return folder, out, vol


def test_script_compiles_and_reads_only_files_beside_it(export_folder):
  folder, out, _ = export_folder
  script = out['files']['open_in_slicer']
  assert os.path.dirname(script) == str(folder)
  py_compile.compile(script, doraise=True)
  tree = ast.parse(open(script).read())
  names = {
      n.value
      for n in ast.walk(tree)
      if isinstance(n, ast.Constant)
      and isinstance(n.value, str)
      and '.' in n.value
      and os.sep not in n.value
      and ' ' not in n.value
  }
  assert names == {'volume.nrrd', 'tf.vp.json'}, names
  assert all((folder / n).is_file() for n in names)
  imports = {
      a.name
      for n in ast.walk(tree)
      if isinstance(n, ast.Import)
      for a in n.names
  }
  assert imports == {'os', 'slicer'}
  assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]


def test_call_sequence_against_a_recording_stand_in(
    export_folder, monkeypatch, tmp_path
):
  folder, out, vol = export_folder
  log, seen = [], []
  # Run from elsewhere: the script must find its files by __file__, not cwd.
  monkeypatch.chdir(tmp_path)
  _run_like_slicer(
      out['files']['open_in_slicer'], _recording_slicer(log, seen), monkeypatch
  )
  calls = [name for name, _ in log]
  assert calls == [
      'slicer.util.loadVolume',
      'slicer.util.loadNodeFromFile',
      'slicer.modules.volumerendering.logic',
      'logic.CreateDefaultVolumeRenderingNodes',
      'display.GetVolumePropertyNode',
      'volume_property_node.Copy',
      'display.SetVisibility',
      'slicer.util.resetThreeDViews',
  ]
  assert set(calls) <= set(DOCUMENTED_CALLS)
  args = dict(log)
  assert args['slicer.util.loadVolume'] == (str(folder / 'volume.nrrd'),)
  assert args['slicer.util.loadNodeFromFile'] == (
      str(folder / 'tf.vp.json'),
      'TransferFunctionFile',
  )
  # Rendering nodes for the loaded volume, the loaded property copied in.
  assert (
      args['logic.CreateDefaultVolumeRenderingNodes'][0].name == 'volume_node'
  )
  assert args['volume_property_node.Copy'][0].name == 'loaded_property_node'
  assert args['display.SetVisibility'] == (True,)
  # The files it hands to Slicer are the export's, and they read back.
  hu, header = nrrd.read(seen[0], index_order='C')
  np.testing.assert_allclose(hu, np.asarray(vol.hu), atol=0.5)
  np.testing.assert_allclose(header['spacings'][::-1], vol.spacing)
  tf = slicer_io.read_vp_json(seen[1])
  assert tf.scalar_opacity.shape[0] >= 2


def test_script_names_a_missing_file(export_folder, monkeypatch, tmp_path):
  _, out, _ = export_folder
  lonely = tmp_path / 'open_in_slicer.py'
  lonely.write_text(open(out['files']['open_in_slicer']).read())
  log = []
  with pytest.raises(FileNotFoundError, match='volume.nrrd'):
    _run_like_slicer(str(lonely), _recording_slicer(log, []), monkeypatch)
  assert log == []  # nothing asked of Slicer before the check
