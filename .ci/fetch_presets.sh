#!/usr/bin/env bash
# Fetches InVesalius' raycasting presets (.plist, GPL; Debian package
# invesalius) into the rlhf_tf cache ($RLHF_TF_DATA or ~/.cache/rlhf_tf),
# outside the repo: the baselines of the propose job and their tests.
#
# Usage: .ci/fetch_presets.sh [PYTHON]   (default: python3)
# Without apt-get/dpkg-deb this only warns (the preset tests then skip).
set -euo pipefail

PY="${1:-python3}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "WARNING: $tool not found; skipping the InVesalius presets fetch" \
         "(preset tests will skip). See rlhf_tf/export/invesalius_presets.py." >&2
    exit 0
  fi
done

"$PY" -m rlhf_tf.export.invesalius_presets
