"""Makes docs/renderings.png and docs/renderings_before_after.png.

  .venv/bin/python docs/make_renderings.py [--out docs]

Runs experiments/render.py (the expert TF; phantom and the fetched Cranium
CT) with point samples and with ':preintegrated' (pre-integrated
classification + structure-tensor shading), then lays out
- renderings.png: the pre-integrated images beside the expert action on
  each JH (README's "What you get");
- renderings_before_after.png: point samples vs pre-integrated, same view,
  TF and 1 mm step: the wood-grain rings of point sampling and their absence.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from rlhf_tf.jobs import experiment_file, JOBS  # noqa: E402

EXPERIMENT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    'experiments',
    'render.py',
)
SCENES = (('phantom', ''), ('Cranium CT', 'cranium'))


def _render(arg: str, workdir: str):
  config = experiment_file.load_config(EXPERIMENT + ':' + arg)
  os.makedirs(workdir, exist_ok=True)
  JOBS[config.job](config, workdir)
  return (
      Image.open(os.path.join(workdir, 'render_0.png')),
      Image.open(os.path.join(workdir, 'jh_0.png')),
  )


def _panel(ax, image, title):
  ax.imshow(image)
  ax.set_title(title)
  ax.axis('off')


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--out', default=os.path.dirname(os.path.abspath(__file__)))
  out = p.parse_args().out
  images = {}
  with tempfile.TemporaryDirectory() as tmp:
    for name, arg in SCENES:
      for mode in ('point', 'preintegrated'):
        a = ','.join(x for x in (arg, 'preintegrated' * (mode != 'point')) if x)
        images[name, mode] = _render(a, os.path.join(tmp, f'{name}-{mode}'))
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    for k, (name, _) in enumerate(SCENES):
      render, jh = images[name, 'preintegrated']
      _panel(axes[2 * k], render, f'{name}: expert TF')
      _panel(axes[2 * k + 1], jh, f'{name}: the action on its JH')
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'renderings.png'), dpi=90)
    fig, axes = plt.subplots(2, 2, figsize=(9, 9.4))
    for k, (name, _) in enumerate(SCENES):
      for r, (mode, title) in enumerate(
          (
              ('point', 'point samples'),
              ('preintegrated', 'pre-integrated + tensor shading'),
          )
      ):
        _panel(axes[r, k], images[name, mode][0], f'{name}: {title}')
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'renderings_before_after.png'), dpi=90)


if __name__ == '__main__':
  main()
