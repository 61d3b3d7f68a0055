# Shared by scripts/run and scripts/test (sourced).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Build output lives outside the clone so reruns are incremental.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# ensure_cmds CMD:PACKAGE... installs the Debian package of each missing command.
ensure_cmds() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq </dev/null >&2
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >&2
}

# cmake builds zlib-ng for pingora-core; a C compiler is on every Rust machine.
ensure_build_tools() {
  ensure_cmds cmake:cmake cc:gcc
  command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
}

# ensure_python_packages MODULE:PACKAGE... installs the PyPI package of each module
# python3 cannot import (the SDK clients of the test suite).
ensure_python_packages() {
  local missing=()
  for pair in "$@"; do
    python3 -c "import ${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing from PyPI: ${missing[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}" </dev/null >&2
}
