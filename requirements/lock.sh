#!/usr/bin/env bash
# Regenerate the hash-pinned locks the GitHub Action installs, one set per supported Python:
#   action-py3.X.txt        the dependencies of lpo-ci, with the [redis] extra (a shared cache)
#   action-local-py3.X.txt  the same and the [local] extra (the embedded model)
#   build-py3.X.txt         what building lpo-ci and llama-cpp-python from source needs
# Each lock is universal (any OS and machine) for Python 3.X and later; uv resolves for a Python it
# does not have. Pass --upgrade to move every pin to its newest allowed release.
set -euo pipefail
cd "$(dirname "$0")/.."
for python in 3.11 3.12 3.13; do
  uv pip compile --quiet --universal --generate-hashes --python-version "$python" "$@" \
    pyproject.toml --extra redis -o "requirements/action-py$python.txt"
  uv pip compile --quiet --universal --generate-hashes --python-version "$python" "$@" \
    pyproject.toml --extra redis --extra local -o "requirements/action-local-py$python.txt"
  uv pip compile --quiet --universal --generate-hashes --python-version "$python" "$@" \
    requirements/build.in -o "requirements/build-py$python.txt"
done
