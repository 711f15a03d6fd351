"""Reference presets in the preference UI: the app's /preset route and page
(Flask test client), and the collect job's wiring of a real Slicer .vp.json
and an InVesalius .plist into renderings of the scene (JAX, tiny scene)."""

import io
import itertools
import plistlib

import numpy as np
from PIL import Image
import pytest

from rlhf_tf.export import slicer, tables
from rlhf_tf.jobs import collect
from rlhf_tf.preferences import dataset
from rlhf_tf.preferences.store import PreferenceStore
from rlhf_tf.ui import auth
from rlhf_tf.ui.app import create_app

KEYS = auth.InspectorKeys(b'preset-test-secret-0123', ['inspector-1'])


def png(value: int) -> bytes:
  buf = io.BytesIO()
  Image.new('RGB', (4, 4), (value, 0, 0)).save(buf, 'PNG')
  return buf.getvalue()


@pytest.fixture
def store_path(tmp_path):
  path = tmp_path / 'p.sqlite'
  with PreferenceStore(path) as s:
    for scene in ('s0', 's1'):
      s.add_scene(scene)
      s.add_actions(
          scene,
          [[[0.1 + i / 20, 0.1], [0.6, 0.1], [0.4, 0.7]] for i in range(3)],
          'random',
      )
      s.add_pairs(scene, list(itertools.combinations(range(3), 2)))
  return path


def test_preset_route_renders_each_preset_once_per_scene(store_path):
  calls = []

  def preset(value):
    def render(scene_id):
      calls.append((value, scene_id))
      return png(value)

    return render

  app = create_app(
      store_path,
      lambda s, a: png(a),
      KEYS,
      presets=[
          ('InVesalius: Bone + Skin', preset(10)),
          ('Slicer: mine', preset(20)),
      ],
  )
  c = app.test_client()
  page = c.get('/').data.decode()
  assert 'id="preset-select"' in page and 'id="preset-panel"' in page
  assert '>InVesalius: Bone + Skin</option>' in page
  assert '<option value="1">Slicer: mine</option>' in page
  for _ in range(2):
    r = c.get('/preset/s1/1.png')
    assert r.status_code == 200 and r.mimetype == 'image/png'
    assert np.asarray(Image.open(io.BytesIO(r.data)))[0, 0, 0] == 20
  assert c.get('/preset/s0/1.png').status_code == 200
  assert calls == [(20, 's1'), (20, 's0')]  # cached per (scene, preset)
  assert c.get('/preset/s0/2.png').status_code == 404
  assert c.get('/preset/nope/0.png').status_code == 404
  assert c.get('/preset/s0/-1.png').status_code == 404


def test_no_presets_no_choice(store_path):
  c = create_app(store_path, lambda s, a: png(a), KEYS).test_client()
  assert b'preset-select' not in c.get('/').data
  r = c.get('/preset/s0/0.png')
  assert r.status_code == 404 and 'unknown preset' in r.json['error']


def test_preset_renderer_returning_garbage_is_a_500(store_path):
  c = create_app(
      store_path,
      lambda s, a: png(a),
      KEYS,
      presets=[('bad', lambda s: b'not a png')],
  ).test_client()
  r = c.get('/preset/s0/0.png')
  assert r.status_code == 500 and 'PNG' in r.json['error']


def _bone_vp_json(path, lo_hu):
  """A user's Slicer file: opaque white above lo_hu, every gradient."""
  tf = tables.SeparableTF(
      scalar_opacity=np.array(
          [[-1024.0, 0.0], [lo_hu, 0.0], [lo_hu + 1.0, 1.0], [4000.0, 1.0]]
      ),
      gradient_opacity=np.array([[0.0, 1.0], [1e4, 1.0]]),
      color=np.array([[-1024.0, 1.0, 1.0, 1.0], [4000.0, 1.0, 1.0, 1.0]]),
      name=f'above {lo_hu:g} HU',
  )
  return slicer.write_vp_json(str(path), tf)


def _invesalius_plist(folder):
  """A minimal InVesalius raycasting preset (window/level ramp, no CLUT)."""
  folder.mkdir()
  with open(folder / 'Ramp.plist', 'wb') as f:
    plistlib.dump(
        dict(
            wl=400.0,
            ww=600.0,
            CLUT='No CLUT',
            name='Ramp',
            groupName='Bone CT',
            advancedCLUT=False,
            useShading=False,
        ),
        f,
    )
  return folder


def test_collect_renders_user_slicer_and_invesalius_presets(
    tmp_path, smoke_config
):
  config = smoke_config('collect')
  config.reference_presets.invesalius_dir = str(
      _invesalius_plist(tmp_path / 'inv')
  )
  config.reference_presets.slicer_files = (
      _bone_vp_json(tmp_path / 'bone.vp.json', 300.0),
      _bone_vp_json(tmp_path / 'all.vp.json', -1000.0),
  )
  store = dataset.open_store(config, str(tmp_path))
  try:
    scene = collect.dataset_scenes(config, store)
  finally:
    store.close()
  names = [name for name, _ in scene.presets]
  assert names == [
      'InVesalius: Ramp',
      'Slicer: above 300 HU',
      'Slicer: above -1000 HU',
  ]
  images = [
      np.asarray(Image.open(io.BytesIO(render(scene.scene_ids[0]))))
      for _, render in scene.presets
  ]
  lit = [float((im[..., :3].max(-1) > 8).mean()) for im in images]
  # Every preset shows something; opaque above -1000 HU (skin) covers more
  # of the picture than opaque above 300 HU (bone only).
  assert all(f > 0.01 for f in lit), lit
  assert lit[2] > lit[1], lit


def test_collect_keeps_files_of_one_name_apart(tmp_path, smoke_config):
  """Slicer files whose TFs share a name (e.g. two rlhf_tf exports) stay
  separate choices on the page."""
  config = smoke_config('collect')
  config.reference_presets.invesalius_dir = str(tmp_path / 'none')
  path = _bone_vp_json(tmp_path / 'x.vp.json', 300.0)
  config.reference_presets.slicer_files = (path,) * 3
  store = dataset.open_store(config, str(tmp_path))
  try:
    scenes = collect.dataset_scenes(config, store)
  finally:
    store.close()
  assert [n for n, _ in scenes.presets] == [
      'Slicer: above 300 HU',
      'Slicer: above 300 HU (2)',
      'Slicer: above 300 HU (3)',
  ]


def test_collect_presets_can_be_turned_off(tmp_path, smoke_config):
  config = smoke_config('collect')
  config.reference_presets.enabled = False
  config.reference_presets.slicer_files = ('/no/such/file.vp.json',)
  store = dataset.open_store(config, str(tmp_path))
  try:
    assert collect.dataset_scenes(config, store).presets == ()
  finally:
    store.close()


def test_collect_missing_slicer_file_names_it(tmp_path, smoke_config):
  config = smoke_config('collect')
  config.reference_presets.slicer_files = (str(tmp_path / 'gone.vp.json'),)
  store = dataset.open_store(config, str(tmp_path))
  try:
    with pytest.raises(FileNotFoundError, match='gone.vp.json'):
      collect.dataset_scenes(config, store)
  finally:
    store.close()
