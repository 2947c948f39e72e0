#!/bin/bash
# setup-wine.sh: prepare the Windows lane (tests/windows/, driven by tests/test_windows_lane.py).
# Run as root by tests/envs/setup.sh. Idempotent and fast (~0.1 s) when the prefix is already built.
#
# - Debian's wine + wine64 (no recommends)
# - a Wine prefix with the official embeddable CPython 3.12 + pywin32 (setup-wine-python.sh, the
#   project's own copy), plus daemonkit's runtime dependencies and pytest as win_amd64 wheels
# - a .pth hook: the embeddable layout ignores PYTHONPATH, so the hook adds the directory named by
#   DAEMONKIT_WIN_SRC (set by the lane driver to the checkout's src) to sys.path at start-up. Every
#   checkout can then share one prefix without re-installing anything.
#
# Prefix: ${DAEMONKIT_WINE_PREFIX:-${DAEMONKIT_TEST_CACHE:-$HOME/.cache/daemonkit-tests}/wine/prefix}
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${DAEMONKIT_TEST_CACHE:-$HOME/.cache/daemonkit-tests}
PREFIX=${DAEMONKIT_WINE_PREFIX:-$CACHE/wine/prefix}
MINOR=12
PYDIR="$PREFIX/drive_c/Python3$MINOR"
SITE="$PYDIR/Lib/site-packages"
# Windows-only or marker-guarded dependencies must be named explicitly: pip evaluates markers for Linux.
PACKAGES=(pytest psutil platformdirs tomli-w)
STAMP="$PREFIX/.daemonkit-setup"
WANT="v1 py3$MINOR ${PACKAGES[*]} $(sha256sum "$HERE/setup-wine-python.sh" | cut -c1-16)"

if [ "$(id -u)" != 0 ] && ! command -v wine >/dev/null; then
  echo "setup-wine: not root and wine is missing, nothing done (the Windows lane will be skipped)"
  exit 0
fi

if ! command -v wine >/dev/null || ! dpkg -s wine64 >/dev/null 2>&1; then
  echo "setup-wine: installing wine, wine64"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wine wine64 >/dev/null
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$PYDIR/python.exe" ]; then
  echo "setup-wine: prefix ready ($PREFIX)"
  exit 0
fi

# The lane holds this lock while it runs: never rebuild the prefix under a running lane.
mkdir -p "$(dirname "$PREFIX")"
exec 9>"$PREFIX.lock"
flock 9
echo "setup-wine: building the prefix $PREFIX"
rm -rf "$PREFIX"  # a half-built prefix from an interrupted run
mkdir -p "$(dirname "$PREFIX")" "$CACHE/pip"
export PIP_CACHE_DIR="$CACHE/pip"
bash "$HERE/setup-wine-python.sh" "$PREFIX" "$MINOR"
python3 -m pip install -q --disable-pip-version-check --no-warn-script-location --target "$SITE" \
  --platform win_amd64 --python-version "3.$MINOR" --implementation cp --abi "cp3$MINOR" \
  --only-binary=:all: "${PACKAGES[@]}"
# Executed by site.py at every start of the Windows interpreter (lines starting with "import" run).
printf '%s\n' "import os, sys; p = os.environ.get('DAEMONKIT_WIN_SRC'); p and sys.path.insert(0, p)" \
  > "$SITE/daemonkit_dev.pth"

export WINEPREFIX="$PREFIX" WINEDEBUG=-all
wine "C:\\Python3$MINOR\\python.exe" -c "import pytest, psutil, platformdirs, tomli_w, win32job, win32service; print('ok')" \
  </dev/null 2>&1 | cat > "$PREFIX/.check"
wineserver -k 2>/dev/null || true
exec 9>&-  # release the lock (a wineserver started above was ended: it would have inherited it)
grep -q '^ok' "$PREFIX/.check" || { echo "setup-wine: the Windows interpreter cannot import its packages:" >&2; cat "$PREFIX/.check" >&2; exit 1; }
echo "$WANT" > "$STAMP"
echo "setup-wine: ready ($PREFIX)"
