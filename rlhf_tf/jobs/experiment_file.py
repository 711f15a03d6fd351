"""Experiment files: loading them, their `:arg`, early override checks.

An experiment file's `get_config(arg)` reads its `:arg` with `parse_arg`
and may start from another experiment's config (`load_config(...,
relative_to=__file__)`: reward_ce.py builds on simulate.py's data).
`shrink_reward_model` is the one tiny reward model every `:smoke` of an
experiment that trains a reward uses. `ml_collections.config_flags` rejects
unknown `--experiment.a.b=v` keys, but
deep inside absl's flag parsing; `check_override_keys` runs first and names
the valid keys.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections


def load_config(
    spec: str, relative_to: str | None = None
) -> ml_collections.ConfigDict:
  """`experiments/x.py[:arg]` -> the ConfigDict its get_config(arg) returns.

  Args:
    spec: the file's path, then optionally `:` and its arg.
    relative_to: a file whose folder a relative path starts from (an
      experiment building on another passes its own `__file__`).
  """
  path, _, arg = spec.partition(':')
  if relative_to is not None:
    path = os.path.join(os.path.dirname(os.path.abspath(relative_to)), path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'experiment file {path!r} not found')
  module_spec = importlib.util.spec_from_file_location(
      'experiment_' + os.path.splitext(os.path.basename(path))[0], path
  )
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def parse_arg(arg: str | None, **words: bool) -> ml_collections.ConfigDict:
  """An experiment's `:arg`, comma-separated words, e.g. 'cranium,smoke'.

  Args:
    arg: what follows the `:` of `--experiment=x.py:arg` (None or '' = none).
    **words: every word the experiment knows, with its default (False).

  Returns:
    A ConfigDict word -> bool, True for each word given.

  Raises:
    ValueError: naming an unknown word and the valid ones.
  """
  out = ml_collections.ConfigDict(dict(words))
  for word in (arg or '').split(','):
    word = word.strip()
    if not word:
      continue
    if word not in words:
      raise ValueError(
          f'unknown arg {word!r}; valid: ' f'{", ".join(sorted(words))}'
      )
    out[word] = True
  return out


def shrink_reward_model(model: ml_collections.ConfigDict) -> None:
  """Makes ``config.reward.model`` (reward/model.py) tiny, in place, for a
  `:smoke` run: 3 conv layers of 4 features at stride 2, no pooling, a
  small action MLP and head (the sizes are unchanged otherwise)."""
  model.conv_features = (4, 4, 4)
  model.strides = (2, 2, 2)
  model.input_pool = 1
  model.readout_pool = 1
  model.action_features = (8, 16)
  model.hidden = (16, 8)


def check_override_keys(
    config: ml_collections.ConfigDict, dotted_keys: list[str]
) -> None:
  """Raises KeyError naming the first unknown key and the valid ones there."""
  for dotted in dotted_keys:
    node, walked = config, []
    for part in dotted.split('.'):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        valid = (
            ', '.join(sorted(node.keys()))
            if isinstance(node, ml_collections.ConfigDict)
            else f'none: {".".join(walked)} is a value, not a group'
        )
        where = '.'.join(walked) or 'the top level'
        raise KeyError(
            f'unknown config key {dotted!r}: no {part!r} in '
            f'{where}; valid keys there: {valid}'
        )
      node = node[part]
      walked.append(part)


def overrides_in_argv(argv: list[str], flag: str = 'experiment') -> list[str]:
  """The dotted keys of `--flag.key=value` / `--flag.key value` arguments."""
  keys = []
  for arg in argv:
    for prefix in (f'--{flag}.', f'-{flag}.'):
      if arg.startswith(prefix):
        keys.append(arg[len(prefix) :].split('=', 1)[0])
        break
  return keys


def spec_in_argv(argv: list[str], flag: str = 'experiment') -> str | None:
  """The value of `--flag=spec` or `--flag spec` in argv, if any."""
  for i, arg in enumerate(argv):
    for prefix in (f'--{flag}=', f'-{flag}='):
      if arg.startswith(prefix):
        return arg[len(prefix) :]
    if arg in (f'--{flag}', f'-{flag}') and i + 1 < len(argv):
      return argv[i + 1]
  return None
