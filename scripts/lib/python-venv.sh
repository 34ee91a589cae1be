# Sourced by the tool scripts (aws-tools.sh, api-fuzz-tools.sh): installs pinned PyPI packages
# into a project-local virtual environment, idempotently (a stamp file records what is there, so
# a second run installs nothing), checks the tools it must provide, and prints its bin directory
# last, so callers can `PATH="$(scripts/<tools>.sh | tail -1):$PATH"`.
#
#   install_venv <label> <venv dir> "<tool> <tool> ..." <requirement>...

install_venv() {
  local label=$1 venv=$2 tools=$3
  shift 3
  local python=${PYTHON:-python3}
  if [ ! -x "$venv/bin/python" ]; then
    echo "[$label] creating $venv" >&2
    "$python" -m venv "$venv"
  fi
  local stamp="$venv/.requirements" wanted
  wanted=$(printf '%s\n' "$@")
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "[$label] installing $*" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
    printf '%s\n' "$wanted" > "$stamp"
  fi
  local tool
  for tool in $tools; do
    if [ ! -x "$venv/bin/$tool" ]; then
      echo "[$label] $tool missing from $venv/bin after install" >&2
      exit 1
    fi
  done
  echo "$venv/bin"
}
