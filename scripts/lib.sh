# Shared by scripts/run-local and scripts/test: a project virtualenv, installed once per setup.cfg.
# shellcheck shell=bash

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

pick_python() {
  for candidate in "${PYTHON:-}" python3.12 python3.11 python3.10 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "audiojobs needs Python 3.10 or newer (set PYTHON=/path/to/python3)" >&2
  return 1
}

# ensure_venv EXTRAS: create .venv and `pip install -e .[EXTRAS]`, unless the same setup.cfg
# was already installed with those extras (then nothing is installed and no network is used).
ensure_venv() {
  local extras=$1 py stamp want
  if [ ! -x .venv/bin/python ]; then
    py=$(pick_python) || return 1
    echo "audiojobs: creating .venv with $py" >&2
    if ! "$py" -m venv .venv; then
      echo "audiojobs: '$py -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
      return 1
    fi
  fi
  local hash
  hash=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
  want="$extras $hash"
  stamp=.venv/.audiojobs-installed
  # The test extras include the worker extras.
  if grep -qxF "$want" "$stamp" 2>/dev/null || grep -qxF "test $hash" "$stamp" 2>/dev/null; then
    return 0
  fi
  echo "audiojobs: installing the project into .venv (extras: $extras) ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
  echo "$want" >> "$stamp"
}
