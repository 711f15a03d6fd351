"""Scenes of a preference dataset, registered in the preference store.

A dataset config names its scenes: ``config.scenes``, a comma-separated
list of entries

  phantom:SEEDS  phantoms (``config.volume``'s shape, metal, noise, patient,
                 spacing) of seeds '3', '0-7' (inclusive) or '1+4+9'
  cranium        the InVesalius sample head CT
  inv3:PATH      an InVesalius project file
  dicom:PATH     every CT series under the folder PATH (grouped by
                 SeriesInstanceUID over the whole tree): one scene each

e.g. ``--experiment.scenes=phantom:0-7,cranium``; '' = the scene(s) of
``config.volume`` (phantoms: one per ``config.scene_seeds``; a DICOM folder
holding several series: one per series). Pairs are always drawn within one
scene. ``ensure_scene`` builds a scene's action set D and pairs and
writes them to the store the first time, and afterwards rebuilds the scene
from what the store recorded, so every stage (simulated inspector, browser
UI, reward training, evaluation) sees the same actions with the same ids.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os

from absl import logging
import jax
import ml_collections
import numpy as np

from rlhf_tf.data import dicom_series, sources
from rlhf_tf.devices import distributed
from rlhf_tf.devices import mesh as mesh_lib
from rlhf_tf.input_error import ConfigError, InputError
from rlhf_tf.preferences import actions as actions_lib
from rlhf_tf.preferences import experts as experts_lib
from rlhf_tf.preferences import scenes as scenes_lib
from rlhf_tf.preferences import store as store_lib
from rlhf_tf.render import histogram


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """How to make one scene: its id and the volume config it comes from."""

  scene_id: str
  volume: dict


def _phantom_specs(vol: dict, seeds) -> list[SceneSpec]:
  shape = 'x'.join(str(s) for s in vol['shape'])
  return [
      SceneSpec(
          f'phantom-s{int(seed)}-{shape}',
          dict(vol, source='phantom', seed=int(seed)),
      )
      for seed in seeds
  ]


def _dicom_specs(vol: dict) -> list[SceneSpec]:
  """One scene per CT series under vol['path'] (or the one series_uid)."""
  if vol.get('series_uid'):
    name = vol['path'].rstrip('/').split('/')[-1] or 'dicom'
    return [SceneSpec(f'dicom-{name}-{vol["series_uid"][-8:]}', vol)]
  listing = dicom_series.find_series(vol['path'])
  logging.info('DICOM scenes:\n%s', listing.describe())
  if not listing.series:
    raise InputError(
        f'{vol["path"]}: no CT image series found\n' f'{listing.describe()}'
    )
  if len(listing.series) == 1:  # Today's single-series scene id.
    name = vol['path'].rstrip('/').split('/')[-1] or 'dicom'
    return [SceneSpec(f'dicom-{name}', vol)]
  return [
      SceneSpec(
          f'dicom-{s.scene_name}',
          dict(vol, path=str(s.folder), series_uid=s.uid),
      )
      for s in listing.series
  ]


def parse_seeds(text: str) -> list[int]:
  """'3' -> [3]; '0-7' -> [0, ..., 7]; '1+4+9' -> [1, 4, 9]."""
  try:
    if '-' in text:
      lo, hi = (int(t) for t in text.split('-'))
      return list(range(lo, hi + 1))
    return [int(t) for t in text.split('+')]
  except ValueError as e:
    raise ConfigError(
        f'scenes: bad phantom seeds {text!r}; use 3, 0-7 or ' f'1+4+9'
    ) from e


def _entry_specs(entry: str, vol: dict) -> list[SceneSpec]:
  kind, _, arg = entry.partition(':')
  if kind == 'phantom':
    return _phantom_specs(vol, parse_seeds(arg or '0'))
  if kind == 'cranium' and not arg:
    return [SceneSpec('cranium', dict(vol, source='cranium'))]
  if kind == 'inv3' and arg:
    name = arg.rstrip('/').split('/')[-1]
    return [SceneSpec(f'inv3-{name}', dict(vol, source='inv3', path=arg))]
  if kind == 'dicom' and arg:
    return _dicom_specs(dict(vol, source='dicom', path=arg, series_uid=''))
  raise ConfigError(
      f'scenes: bad entry {entry!r}; valid: phantom:SEEDS, '
      f'cranium, inv3:PATH, dicom:PATH'
  )


def scene_specs(config: ml_collections.ConfigDict) -> list[SceneSpec]:
  """The scenes of a dataset config (see the module docstring).

  Raises:
    ValueError: naming a bad ``scenes`` entry or a repeated scene id.
  """
  vol = config.volume.to_dict()
  entries = [
      e.strip()
      for e in str(config.get('scenes', '') or '').split(',')
      if e.strip()
  ]
  if entries:
    specs = [s for e in entries for s in _entry_specs(e, vol)]
  elif vol['source'] == 'phantom':
    specs = _phantom_specs(vol, config.scene_seeds)
  elif vol['source'] == 'cranium':
    specs = [SceneSpec('cranium', vol)]
  elif vol['source'] == 'dicom':
    specs = _dicom_specs(vol)
  else:
    name = vol['path'].rstrip('/').split('/')[-1] or vol['source']
    specs = [SceneSpec(f'{vol["source"]}-{name}', vol)]
  ids = [s.scene_id for s in specs]
  repeated = sorted({i for i in ids if ids.count(i) > 1})
  if repeated:
    raise ConfigError(f'scenes: scene(s) listed twice: {", ".join(repeated)}')
  return specs


def scene_hash(scene_id: str) -> int:
  """A stable 31-bit integer per scene id, to fold into PRNG keys."""
  return int(hashlib.sha256(scene_id.encode()).hexdigest()[:8], 16) >> 1


def _scene_record(spec: SceneSpec, config) -> dict:
  """What the store keeps to rebuild a scene exactly."""
  return dict(
      volume=spec.volume,
      histogram=config.histogram.to_dict(),
      render=config.render.to_dict(),
  )


# Volume keys added after stores were first written, with the value that
# makes the scene those older stores were made from: a record without the
# key is read with this value (so an older store still loads when its scene
# is the same, and is refused when the config now asks for another one).
_VOLUME_KEYS_ADDED = dict(patient=False, spacing=0.0)
# Likewise for config.render (point samples before the setting existed).
_RENDER_KEYS_ADDED = dict(preintegrate=False, tensor_normals=False)
# Volume keys that decide whether a volume may load, not what its voxels
# are: not part of a scene's identity.
_VOLUME_KEYS_NOT_SCENE = ('allow_non_ct',)


def _scene_identity(record: dict) -> dict:
  """A scene record as compared between the store and the config: JSON
  values, keys added since older stores at their old meaning, and keys
  that do not change the scene left out."""
  out = json.loads(json.dumps(record))
  volume = {**_VOLUME_KEYS_ADDED, **out.get('volume', {})}
  for key in _VOLUME_KEYS_NOT_SCENE:
    volume.pop(key, None)
  out['volume'] = volume
  if 'render' in out:
    out['render'] = {**_RENDER_KEYS_ADDED, **out['render']}
  return out


def _cfg(d: dict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(copy.deepcopy(d))


def scene_jh(store: store_lib.PreferenceStore, scene_id: str):
  """The JH of a stored scene, recomputed from its recorded volume source."""
  record = _stored_record(store, scene_id)
  volume = sources.load_volume(_cfg(record['volume']))
  return histogram.from_config(volume, _cfg(record['histogram']))


def _stored_record(store, scene_id: str) -> dict:
  for s in store.scenes():
    if s['scene_id'] == scene_id:
      return s['volume_source']
  known = ', '.join(s['scene_id'] for s in store.scenes()) or '(none)'
  raise KeyError(f'scene {scene_id!r} is not in the store; it has: {known}')


@dataclasses.dataclass
class SceneData:
  """A scene with its action set (store ids = row index) and pair order."""

  scene: scenes_lib.Scene
  vertices: np.ndarray  # [A, n, 2]
  provenance: tuple
  pairs: np.ndarray  # [P, 2] (left, right) as shown to the inspector
  pair_ids: np.ndarray  # [P] store pair ids


def ensure_scene(
    store: store_lib.PreferenceStore,
    spec: SceneSpec,
    config,
    build_cache: bool = True,
    mesh=None,
) -> SceneData:
  """Registers a scene (D and pairs) in the store, or reloads it.

  Config fields used: histogram, render, actions (num_random, num_augmented,
  sigma, seed), pairs (num, seed), expert_file ('' = experts from the
  volume's tissue groups).

  Several processes: every process builds the scene (``mesh`` splits its
  ray-cache build over the devices: a collective); process 0 alone
  registers it in the store or reads it back, and sends the actions, pairs
  and ids to the others (``distributed.on_primary``).

  Raises:
    ValueError: if the store holds this scene id made from another volume /
      histogram / render config, or an incomplete one (then nothing is
      changed: use a new workdir or store).
  """
  volume = sources.load_volume(_cfg(spec.volume))
  experts = (
      experts_lib.load_expert_actions(config.expert_file)
      if config.expert_file
      else None
  )
  scene = (
      scenes_lib.build_scene(
          spec.scene_id,
          volume,
          config.histogram,
          config.render,
          experts=experts,
          mesh=mesh,
      )
      if build_cache
      else None
  )
  fields = distributed.on_primary(
      lambda: _register_scene(store, spec, config, scene)
  )
  return SceneData(scene=scene, **fields)


def _register_scene(store, spec: SceneSpec, config, scene) -> dict:
  """ensure_scene's store part: writes D and the pairs, or reads them;
  SceneData's fields but the scene."""
  record = _scene_record(spec, config)
  existing = {s['scene_id']: s for s in store.scenes()}
  key = jax.random.fold_in(
      jax.random.key(config.actions.seed), scene_hash(spec.scene_id)
  )
  if spec.scene_id in existing:
    stored = existing[spec.scene_id]['volume_source']
    now, then = _scene_identity(record), _scene_identity(stored)
    if now != then:
      differ = [
          f'{block}.{key}: store {then.get(block, {}).get(key)!r}, '
          f'config {now.get(block, {}).get(key)!r}'
          for block in sorted(set(now) | set(then))
          for key in sorted(set(now.get(block, {})) | set(then.get(block, {})))
          if now.get(block, {}).get(key) != then.get(block, {}).get(key)
      ]
      raise InputError(
          f'scene {spec.scene_id!r} in the store was made from '
          f'another config ({"; ".join(differ)}); use another '
          f'store'
      )
    stored_actions = store.actions(spec.scene_id)
    vertices = store.vertices_array(spec.scene_id)
    provenance = tuple(a.provenance for a in stored_actions)
  else:
    if scene is None:
      raise InputError(f'scene {spec.scene_id!r} is not in the store yet')
    d = actions_lib.action_set_from_config(key, scene.experts, config.actions)
    store.add_scene(
        spec.scene_id,
        description=f'{spec.volume["source"]} ' f'scene',
        volume_source=record,
        jh_meta=dict(
            bins=scene.bins,
            hu_window=[scene.jh.axes.hu_min, scene.jh.axes.hu_max],
            grad_max=scene.jh.axes.grad_max,
        ),
    )
    for kind in (actions_lib.EXPERT, actions_lib.RANDOM, actions_lib.AUGMENTED):
      idx = d.indices(kind)
      if idx.size:
        parents = [None if d.parent[i] < 0 else int(d.parent[i]) for i in idx]
        store.add_actions(spec.scene_id, d.vertices[idx], kind, parents)
    vertices, provenance = d.vertices, d.provenance
  pairs = actions_lib.sample_pairs(
      jax.random.fold_in(
          jax.random.key(config.pairs.seed), scene_hash(spec.scene_id)
      ),
      len(vertices),
      config.pairs.num,
  )
  if store.pairs(spec.scene_id):
    ids = [store.pair_id(spec.scene_id, int(l), int(r)) for l, r in pairs]
    if any(i is None for i in ids):
      raise InputError(
          f'scene {spec.scene_id!r}: the stored pairs differ '
          f'from config.pairs; use another store'
      )
  else:
    ids = store.add_pairs(
        spec.scene_id, [(int(min(l, r)), int(max(l, r))) for l, r in pairs]
    )
  return dict(
      vertices=np.asarray(vertices, np.float32),
      provenance=tuple(provenance),
      pairs=np.asarray(pairs),
      pair_ids=np.asarray(ids, np.int64),
  )


def default_config() -> ml_collections.ConfigDict:
  """The dataset part shared by the simulate / reward / evaluation configs."""
  c = ml_collections.ConfigDict()
  c.store_path = ''  # '' = <workdir>/preferences.sqlite
  c.volume = sources.default_config()
  c.scene_seeds = (0,)
  c.scenes = ''  # e.g. 'phantom:0-7,cranium' (see the module docstring)
  c.histogram = histogram.default_config()
  c.render = scenes_lib.default_config()
  c.actions = ml_collections.ConfigDict(
      dict(num_random=50, num_augmented=40, sigma=0.02, seed=0)
  )
  c.pairs = ml_collections.ConfigDict(dict(num=4000, seed=0))
  c.expert_file = ''
  c.mesh = mesh_lib.default_config()  # devices: all on one 'data' axis
  c.distributed = distributed.default_config()  # processes / hosts
  return c


def store_path(config, workdir: str) -> str:
  return config.store_path or os.path.join(workdir, 'preferences.sqlite')


def open_store(config, workdir: str) -> store_lib.PreferenceStore:
  """The dataset's preference store; in processes other than 0 a
  :class:`StoreOfProcess0` (they read through ``distributed.on_primary``)."""
  path = store_path(config, workdir)
  if distributed.is_primary():
    return store_lib.PreferenceStore(path)
  return StoreOfProcess0(path)


class StoreOfProcess0:
  """The preference store as processes other than 0 hold it: not opened.

  Process 0 alone opens the SQLite file, writes it and reads it (WAL needs
  one machine's shared memory, so hosts cannot share the file safely); the
  others get what they need from it through ``distributed.on_primary``.
  Anything but ``close`` names that rule.
  """

  def __init__(self, path):
    self.path = path

  def close(self):
    pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    pass

  def __getattr__(self, name):
    raise store_lib.StoreError(
        f'process {jax.process_index()} does not open the store {self.path} '
        f'(.{name}); process 0 reads it: distributed.on_primary'
    )
