#!/usr/bin/env bash
# Installs the AWS tooling the Lambda tests and template checks use into a project-local
# virtual environment (.venv-aws, ignored by git), from PyPI only:
#   moto[server]  - SQS FIFO, DynamoDB and API Gateway management emulator (`moto_server`)
#   cargo-lambda  - the Lambda runtime emulator (`cargo lambda watch`) and builder
#   cfn-lint, aws-sam-cli - template checks and `sam build`
# Idempotent: a tool already at its pinned version is not installed again. Prints the venv's
# bin directory last, so callers can `PATH="$(scripts/aws-tools.sh | tail -1):$PATH"`
# (scripts/lib/python-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/python-venv.sh

# Pinned: the tests depend on their behaviour (moto's FIFO semantics, cargo-lambda's
# runtime API emulation), so an upgrade is a deliberate change.
install_venv aws-tools "${AWS_TOOLS_VENV:-$PWD/.venv-aws}" "moto_server cargo-lambda cfn-lint sam" \
  "moto[server]==5.2.5" \
  "cargo-lambda==1.9.2" \
  "cfn-lint==1.58.0" \
  "aws-sam-cli==1.170.0"
