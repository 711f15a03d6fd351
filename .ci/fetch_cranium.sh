#!/usr/bin/env bash
# Fetches the GPL "Cranium" head CT (Debian package invesalius-examples) into
# the rlhf_tf cache ($RLHF_TF_DATA or ~/.cache/rlhf_tf), outside the repo.
#
# Usage: .ci/fetch_cranium.sh [PYTHON]   (default: python3)
#
# Without apt-get/dpkg-deb (non-Debian runner) this only warns and exits 0:
# the real-data tests then skip with a reason. On a Debian runner a failed
# fetch is a real error (exit 1) so a broken download is not silently hidden.
set -euo pipefail

PY="${1:-python3}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "WARNING: $tool not found; skipping the Cranium fetch (real-data" \
         "tests will skip). See rlhf_tf/data/sample_fetch.py." >&2
    exit 0
  fi
done

"$PY" -m rlhf_tf.data.sample_fetch
