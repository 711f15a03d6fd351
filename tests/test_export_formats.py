"""TF export/import: every format round-trips; rectangles are exact; the
separable approximation's IoU on a hand case; InVesalius presets."""

import os
import plistlib

import numpy as np
import pytest

from rlhf_tf.export import (
    invesalius_presets,
    nrrd_table,
    paraview,
    separable,
    slicer,
    tables,
)
from rlhf_tf.render.histogram import JHAxes

AXES = JHAxes(hu_min=-1024.0, hu_max=3071.0, grad_max=550.0)
BINS = 64


def _random_separable(seed=0, points=12, name='random'):
  rng = np.random.default_rng(seed)
  hu = np.sort(rng.uniform(-1000, 3000, points))
  grad = np.sort(rng.uniform(0, 800, points))
  return tables.SeparableTF(
      scalar_opacity=np.stack([hu, rng.uniform(0, 1, points)], -1),
      gradient_opacity=np.stack([grad, rng.uniform(0, 1, points)], -1),
      color=np.concatenate([hu[:, None], rng.uniform(0, 1, (points, 3))], -1),
      unit_distance_mm=0.75,
      gradient_scale_mm=1.2,
      shading=tables.Shading(
          shade=False,
          ambient=0.2,
          diffuse=0.6,
          specular=0.1,
          specular_power=12.0,
      ),
      name=name,
  )


def test_nrrd_round_trip_is_bitwise(tmp_path):
  rng = np.random.default_rng(1)
  table = tables.TFTable(
      rgba=rng.uniform(size=(5, 7, 4)),
      hu_min=-1000.5,
      hu_max=2999.25,
      grad_max=123.4,
      unit_distance_mm=0.9,
      name='random table',
  )
  back = nrrd_table.read_nrrd(nrrd_table.write_nrrd(tmp_path / 't.nrrd', table))
  np.testing.assert_array_equal(back.rgba, table.rgba)
  assert (
      back.hu_min,
      back.hu_max,
      back.grad_max,
      back.unit_distance_mm,
      back.name,
  ) == (-1000.5, 2999.25, 123.4, 0.9, 'random table')


def test_nrrd_reader_names_the_file(tmp_path):
  bad = tmp_path / 'bad.nrrd'
  bad.write_text('not a nrrd')
  with pytest.raises(ValueError, match='bad.nrrd'):
    nrrd_table.read_nrrd(bad)


@pytest.mark.parametrize('fmt', ['vp.json', 'paraview'])
def test_json_formats_round_trip(tmp_path, fmt):
  tf = _random_separable()
  if fmt == 'vp.json':
    back = slicer.read_vp_json(slicer.write_vp_json(tmp_path / 'a.vp.json', tf))
  else:
    back = paraview.read_paraview(
        paraview.write_paraview(tmp_path / 'a.json', tf)
    )
  for field in ('scalar_opacity', 'gradient_opacity', 'color'):
    np.testing.assert_array_equal(getattr(back, field), getattr(tf, field))
  assert back.unit_distance_mm == tf.unit_distance_mm
  assert back.gradient_scale_mm == tf.gradient_scale_mm
  assert back.name == tf.name
  if fmt == 'vp.json':
    assert back.shading == tf.shading


def test_vp_json_follows_slicer_schema(tmp_path):
  path = slicer.write_vp_json(tmp_path / 'a.vp.json', _random_separable())
  import json

  with open(path) as f:
    doc = json.load(f)
  assert doc['@schema'].endswith('volume-property-schema-v1.0.0.json#')
  comp = doc['volumeProperties'][0]['components'][0]
  for key in ('scalarOpacity', 'gradientOpacity', 'rgbTransferFunction'):
    for p in comp[key]['points']:
      assert {'x', 'midpoint', 'sharpness'} <= set(p)
      assert ('color' in p) == (key == 'rgbTransferFunction')
  assert set(comp['lighting']) == {
      'ambient',
      'diffuse',
      'specular',
      'specularPower',
  }


def test_legacy_vp_round_trip_and_line_limit(tmp_path):
  tf = _random_separable()
  back = slicer.read_vp(
      slicer.write_vp(tmp_path / 'a.vp', tf),
      gradient_scale_mm=1.2,
      unit_distance_mm=0.75,
  )
  for field in ('scalar_opacity', 'gradient_opacity', 'color'):
    np.testing.assert_allclose(
        getattr(back, field), getattr(tf, field), rtol=1e-6, atol=1e-6
    )
  assert back.shading == tf.shading
  # 400 smooth points do not fit a 1023-character line: points are dropped
  # until they do, and the function stays close.
  x = np.linspace(-1000, 3000, 400)
  smooth = tables.SeparableTF(
      scalar_opacity=np.stack([x, 0.5 + 0.5 * np.sin(x / 500)], -1),
      gradient_opacity=[[0, 1]],
      color=[[0, 1, 1, 1]],
  )
  path = slicer.write_vp(tmp_path / 'long.vp', smooth)
  with open(path) as f:
    assert max(len(line) for line in f.read().splitlines()) < 1024
  back = slicer.read_vp(path)
  assert len(back.scalar_opacity) < 400
  np.testing.assert_allclose(
      tables.interp_points(back.scalar_opacity, x)[:, 0],
      smooth.scalar_opacity[:, 1],
      atol=5e-3,
  )


def _rectangle_table(x_lo=0.3, x_hi=0.6, hard=True):
  rect = np.array([[x_lo, 0.0], [x_hi, 0.0], [x_hi, 1.0], [x_lo, 1.0]])
  return tables.polygon_table(
      rect, AXES, BINS, tau=0.01, alpha_max=0.5, unit_distance_mm=1.3, hard=hard
  )


@pytest.mark.parametrize('fmt', ['vp.json', 'vp', 'paraview'])
def test_rectangle_over_all_gradients_is_exact(tmp_path, fmt):
  table = _rectangle_table()
  sep, report = separable.separable_tf(table, gradient_scale_mm=1.1)
  assert report['support_iou'] == 1.0
  assert report['max_abs_alpha_error'] < 1e-9
  if fmt == 'vp.json':
    back = slicer.read_vp_json(
        slicer.write_vp_json(tmp_path / 'r.vp.json', sep)
    )
  elif fmt == 'vp':
    back = slicer.read_vp(
        slicer.write_vp(tmp_path / 'r.vp', sep),
        gradient_scale_mm=1.1,
        unit_distance_mm=1.3,
    )
  else:
    back = paraview.read_paraview(
        paraview.write_paraview(tmp_path / 'r.json', sep)
    )
  again = back.table(AXES, BINS)
  np.testing.assert_allclose(again.rgba, table.rgba, atol=1e-6)
  assert again.unit_distance_mm == 1.3
  # A step in opacity needs only its 4 corners and 2 ends, not every bin.
  assert len(sep.scalar_opacity) <= 6 and len(sep.gradient_opacity) == 2


def test_support_iou_hand_case():
  """An L on a 3x3 JH: the low-gradient row (weighted heavily) plus the two
  bins above its first column. The rank-one fit keeps the row (s = 1, the
  upper rows get g = 1/3 < 1/2), so the supports are 3 of 5 bins: IoU 3/5."""
  alpha = np.array(
      [
          [1.0, 1.0, 1.0],  # row 0 = lowest gradient
          [1.0, 0.0, 0.0],
          [1.0, 0.0, 0.0],
      ]
  )
  table = tables.TFTable(
      rgba=np.concatenate([np.ones((3, 3, 3)), alpha[..., None]], -1),
      hu_min=0.0,
      hu_max=3.0,
      grad_max=3.0,
  )
  weights = np.array([[1.0] * 3, [1e-6] * 3, [1e-6] * 3])
  sep, report = separable.separable_tf(
      table, jh_weights=weights, weight_floor=0.0, tol=0.0
  )
  approx = sep.table(table.axes, 3).rgba[..., 3]
  np.testing.assert_allclose(approx[0], 1.0, atol=1e-4)
  np.testing.assert_allclose(approx[1:, 0], 1 / 3, atol=1e-4)
  assert report['support_iou'] == pytest.approx(3 / 5)
  counts = np.array([[10, 0, 0], [0, 0, 0], [30, 0, 0]])
  report = separable.separable_report(table, sep, counts)
  assert report['support_iou_voxels'] == pytest.approx(10 / 40)
  assert (
      separable.support_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool))
      == 1.0
  )


def test_separable_table_matches_closed_form():
  tf = tables.SeparableTF(
      scalar_opacity=[[0, 0], [1000, 0.8]],
      gradient_opacity=[[0, 0.5], [100, 1.0]],
      color=[[0, 1, 0, 0], [1000, 0, 0, 1]],
      unit_distance_mm=1.0,
      gradient_scale_mm=2.0,
  )
  axes = JHAxes(hu_min=0.0, hu_max=1000.0, grad_max=50.0)
  t = tf.table(axes, 4, unit_distance_mm=2.0)
  c = (np.arange(4) + 0.5) / 4
  s = 0.8 * c
  g = 0.5 + 0.5 * np.minimum(c * 50 * 2.0 / 100, 1)
  a1 = g[:, None] * s[None]
  np.testing.assert_allclose(t.rgba[..., 3], 1 - (1 - a1) ** 2, atol=1e-6)
  np.testing.assert_allclose(t.rgba[0, :, 0], 1 - c, atol=1e-6)


def test_resample_identity_and_opacity_units():
  rng = np.random.default_rng(2)
  table = tables.TFTable(
      rgba=rng.uniform(0, 0.9, (8, 8, 4)),
      hu_min=-10.0,
      hu_max=30.0,
      grad_max=5.0,
      unit_distance_mm=1.0,
  )
  same = tables.resample_table(table, table.axes, 8)
  np.testing.assert_allclose(same.rgba, table.rgba, atol=1e-6)
  half = tables.resample_table(table, table.axes, 8, unit_distance_mm=0.5)
  np.testing.assert_allclose(
      1 - (1 - half.rgba[..., 3]) ** 2, table.rgba[..., 3], atol=1e-5
  )


def _write_plist(path, data):
  with open(path, 'wb') as f:
    plistlib.dump(data, f)


def test_invesalius_presets_synthetic(tmp_path):
  _write_plist(
      tmp_path / 'Adv.plist',
      {
          'advancedCLUT': True,
          'name': 'Adv',
          'groupName': 'Bone CT',
          'useShading': False,
          '16bitClutCurves': [
              [{'x': 200.0, 'y': 0.0}, {'x': 400.0, 'y': 0.6}],
              [{'x': -600.0, 'y': 0.0}, {'x': -500.0, 'y': 0.2}],
          ],
          '16bitClutColors': [
              [
                  {'red': 1.0, 'green': 1.0, 'blue': 1.0},
                  {'red': 1.0, 'green': 0.5, 'blue': 0.0},
              ],
              [
                  {'red': 0.0, 'green': 0.0, 'blue': 0.0},
                  {'red': 0.2, 'green': 0.2, 'blue': 0.2},
              ],
          ],
      },
  )
  tf = invesalius_presets.read_preset(
      tmp_path / 'Adv.plist', volume_min_hu=-1024.0
  )
  op = lambda hu: tables.interp_points(tf.scalar_opacity, [hu])[0, 0]
  assert op(-550.0) == pytest.approx(0.1)
  assert op(300.0) == pytest.approx(0.3)
  assert op(-1024.0) == 0.0
  # After the last point: the linear fall to 0 at min + 65535 HU.
  assert op(1000.0) == pytest.approx(0.6 * (1 - 600 / (64511 - 400)))
  np.testing.assert_allclose(
      tables.interp_points(tf.color, [400.0])[0], [1.0, 0.5, 0.0]
  )
  assert not tf.shading.shade and tf.name == 'InVesalius Adv'
  os.makedirs(tmp_path / 'color_list')
  _write_plist(
      tmp_path / 'color_list' / 'Ramp.plist',
      {'Red': list(range(256)), 'Green': [0] * 256, 'Blue': [255] * 256},
  )
  _write_plist(
      tmp_path / 'Win.plist',
      {
          'advancedCLUT': False,
          'CLUT': 'Ramp',
          'ww': 200.0,
          'wl': 100.0,
          'name': 'Win',
          'useShading': True,
      },
  )
  tf = invesalius_presets.read_preset(tmp_path / 'Win.plist')
  assert tables.interp_points(tf.scalar_opacity, [100.0])[
      0, 0
  ] == pytest.approx(0.5)
  np.testing.assert_allclose(
      tables.interp_points(tf.color, [100.0])[0], [127.5 / 255, 0, 1], atol=1e-6
  )
  (tmp_path / 'Bad.plist').write_text('nope')
  with pytest.raises(ValueError, match='Bad.plist'):
    invesalius_presets.read_preset(tmp_path / 'Bad.plist')


def test_real_invesalius_presets_parse():
  folder = invesalius_presets.presets_dir()
  if not (folder / 'Bone + Skin.plist').is_file():
    pytest.skip(
        f'InVesalius presets not fetched ({folder}); run '
        '`python -m rlhf_tf.export.invesalius_presets`'
    )
  paths = invesalius_presets.list_presets(folder)
  assert len(paths) >= 20
  bone = [p for p in paths if invesalius_presets.preset_group(p) == 'Bone CT']
  assert bone
  for p in paths:
    t = invesalius_presets.read_preset(p).table(AXES, 32, 1.0)
    assert t.rgba[..., 3].max() > 0, p
