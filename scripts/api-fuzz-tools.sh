#!/usr/bin/env bash
# Installs the API fuzzing tool the OpenAPI test uses into a project-local virtual environment
# (.venv-fuzz, ignored by git), from PyPI only:
#   schemathesis  - property-based testing of the API against its OpenAPI document (`st`)
# Idempotent; prints the venv's bin directory last (scripts/lib/python-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/python-venv.sh

# Pinned: the test depends on its behaviour (which checks exist and what they demand, how
# requests are generated from a seed), so an upgrade is a deliberate change.
install_venv api-fuzz-tools "${API_FUZZ_VENV:-$PWD/.venv-fuzz}" "st" \
  "schemathesis==4.32.5"
