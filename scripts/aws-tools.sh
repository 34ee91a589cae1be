#!/usr/bin/env bash
# Installs the AWS tooling the Lambda tests and template checks use into a project-local
# virtual environment (.venv-aws, ignored by git), from PyPI only:
#   moto[server]  - SQS FIFO, DynamoDB and API Gateway management emulator (`moto_server`)
#   cargo-lambda  - the Lambda runtime emulator (`cargo lambda watch`) and builder
#   cfn-lint, aws-sam-cli - template checks and `sam build`
# Idempotent: a tool already at its pinned version is not installed again. Prints the venv's
# bin directory last, so callers can `PATH="$(scripts/aws-tools.sh | tail -1):$PATH"`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${AWS_TOOLS_VENV:-$PWD/.venv-aws}
python=${PYTHON:-python3}

# Pinned: the tests depend on their behaviour (moto's FIFO semantics, cargo-lambda's
# runtime API emulation), so an upgrade is a deliberate change.
requirements=(
  "moto[server]==5.2.5"
  "cargo-lambda==1.9.2"
  "cfn-lint==1.58.0"
  "aws-sam-cli==1.170.0"
)

if [ ! -x "$venv/bin/python" ]; then
  echo "[aws-tools] creating $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.requirements"
wanted=$(printf '%s\n' "${requirements[@]}")
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "[aws-tools] installing ${requirements[*]}" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}" >&2
  printf '%s\n' "$wanted" > "$stamp"
fi
for tool in moto_server cargo-lambda cfn-lint sam; do
  if [ ! -x "$venv/bin/$tool" ]; then
    echo "[aws-tools] $tool missing from $venv/bin after install" >&2
    exit 1
  fi
done
echo "$venv/bin"
