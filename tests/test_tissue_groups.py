"""A fair judge on unlabelled scans: the patient is the largest foreground
body, holders and supports outside it are SUPPORT, which the inspector
counts as clutter instead of bone."""

import functools

import jax
import numpy as np
from scipy import ndimage

from rlhf_tf.data import phantom
from rlhf_tf.data.volume import make_volume
from rlhf_tf.preferences import inspector, scenes, tissues
from rlhf_tf.render import histogram

SHAPE = (40, 40, 40)
HOLDER = np.s_[5:30, 1:4, 2:9]  # A bar beside the face (Z, Y, X).


@functools.lru_cache(maxsize=None)
def _phantom():
  return phantom.make_head_phantom(jax.random.key(0), SHAPE)


def _unlabelled(holder: bool, bridge: bool = False):
  """The phantom's HU without its label map, with a 600 HU plastic holder
  (and a one-voxel contact bar to the skin)."""
  vol = _phantom()
  hu = np.array(vol.hu)
  if holder:
    hu[HOLDER] = 600.0
    if bridge:
      # Along x to column 14, then along y to the skin.
      skin = np.flatnonzero(vol.labels[20, :, 14] > 0)[0]
      hu[20, 2, 9:15] = 40.0
      hu[20, 2 : skin + 1, 14] = 40.0
  return make_volume(hu, vol.spacing, vol.origin, name='unlabelled')


def test_the_holder_is_far_from_the_head():
  far = ndimage.distance_transform_edt(_phantom().labels == 0)
  assert far[HOLDER].min() > 2


def test_a_head_alone_is_one_body_without_supports():
  groups = tissues.tissue_groups(_unlabelled(holder=False))
  assert not (groups == tissues.SUPPORT).any()
  body = tissues.patient_body(_unlabelled(holder=False).hu)
  labels = _phantom().labels
  head = ~np.isin(
      labels, [phantom.LABEL_VALUES['air'], phantom.LABEL_VALUES['airway']]
  )
  assert (body & head).sum() > 0.97 * head.sum()


def test_a_holder_is_support_not_bone():
  vol = _unlabelled(holder=True)
  by_hu = tissues.groups_from_hu(vol.hu)
  assert (by_hu[HOLDER] == tissues.BONE).all()  # What HU alone says.
  groups = tissues.tissue_groups(vol)
  assert (groups[HOLDER] == tissues.SUPPORT).all()
  outside = np.ones(SHAPE, bool)
  outside[HOLDER] = False
  np.testing.assert_array_equal(groups[outside], by_hu[outside])


def test_a_holder_touching_the_skin_by_a_thin_bar_is_still_support():
  groups = tissues.tissue_groups(_unlabelled(holder=True, bridge=True))
  assert (groups[HOLDER] == tissues.SUPPORT).mean() > 0.95


def test_specks_of_noise_outside_the_head_stay_what_their_hu_says():
  vol = _unlabelled(holder=False)
  hu = np.array(vol.hu)
  hu[2, 2, 2] = 900.0
  groups = tissues.mark_supports(tissues.groups_from_hu(hu), hu)
  assert groups[2, 2, 2] == tissues.BONE


def _criteria(vol, vertices):
  render = scenes.default_config()
  render.image_size = 24
  render.azimuth, render.elevation = 0.0, 0.0  # The holder in front.
  hist = histogram.default_config()
  hist.bins = 64
  scene = scenes.build_scene(
      's', vol, hist, render, experts=np.zeros((1, 4, 2), np.float32)
  )
  rgba, weights, hits = scene.render_tissues(vertices)
  return inspector.criteria(
      np.asarray(weights), np.asarray(hits), np.asarray(rgba)
  ), np.asarray(weights)


def test_the_inspector_wants_the_holder_hidden():
  """A bone TF (250 HU up) shows the holder: with anatomical groups it
  costs 'clean' and earns no 'target_visible'; a TF starting above the
  holder's HU hides it and is judged better."""
  axes_lo, axes_hi = -1024.0, 3071.0

  def tf(hu_low):
    x = (hu_low - axes_lo) / (axes_hi - axes_lo)
    return np.array([[x, 0.0], [1.0, 0.0], [1.0, 1.0], [x, 1.0]], np.float32)

  with_holder, weights = _criteria(_unlabelled(holder=True), tf(300.0))
  assert weights[..., tissues.SUPPORT].sum() > 0
  without, _ = _criteria(_unlabelled(holder=False), tf(300.0))
  assert with_holder[2] < without[2] - 0.01  # Less clean.
  hiding, hidden_weights = _criteria(_unlabelled(holder=True), tf(700.0))
  shown = weights[..., tissues.SUPPORT].sum()
  assert hidden_weights[..., tissues.SUPPORT].sum() < 0.2 * shown
  assert hiding[2] > with_holder[2]
