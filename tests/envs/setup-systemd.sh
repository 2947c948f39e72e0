#!/bin/bash
# setup-systemd.sh: prepare the real systemd lane (tests/systemd/). Idempotent; run as root.
#
# - the tools: systemd (systemctl, systemd-analyze, journald), util-linux (unshare, setpriv), python3-venv
# - a non-root test user `sdtest`, uid 4242 (journalctl --user finds nothing for root on systemd 252)
# - a venv made from Debian's /usr/bin/python3 with daemonkit's dependencies and the project installed,
#   readable by that user. It lives outside root's $HOME (mode 700, not traversable by sdtest):
#   ${DAEMONKIT_SD_VENV:-/var/cache/daemonkit-tests/systemd/venv}. pip's downloads are cached under
#   ${DAEMONKIT_TEST_CACHE:-$HOME/.cache/daemonkit-tests}.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${DAEMONKIT_TEST_CACHE:-$HOME/.cache/daemonkit-tests}
VENV=${DAEMONKIT_SD_VENV:-/var/cache/daemonkit-tests/systemd/venv}
TEST_USER=sdtest
TEST_UID=4242

if [ "$(id -u)" != 0 ]; then
  echo "setup-systemd: not root, nothing done (the systemd lane will be skipped)"
  exit 0
fi

missing=()
for tool in systemctl systemd-analyze journalctl unshare setpriv; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -x /lib/systemd/systemd ] && [ -x /lib/systemd/systemd-journald ] || missing+=(systemd-binaries)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-systemd: installing packages for: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd util-linux python3-venv >/dev/null
fi

if ! id "$TEST_USER" >/dev/null 2>&1; then
  useradd --create-home --uid "$TEST_UID" --shell /bin/bash "$TEST_USER"
fi
[ "$(id -u "$TEST_USER")" = "$TEST_UID" ] || { echo "setup-systemd: $TEST_USER exists with another uid" >&2; exit 1; }

mkdir -p "$CACHE/pip"
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  /usr/bin/python3 -m venv "$VENV"
fi
# Non-editable: the user cannot read the checkout (it may sit under /root). The lane re-copies the
# package source before each run, so this copy going stale between setups does not matter.
# Built from a copy: building in the checkout would leave src/daemonkit.egg-info behind, whose
# pytest11 entry point then shadows the checkout's own plugin list.
BUILD=$(mktemp -d); trap 'rm -rf "$BUILD"' EXIT
cp -r "$ROOT/pyproject.toml" "$ROOT/src" "$BUILD/"
for f in README.md LICENSE; do [ -e "$ROOT/$f" ] && cp "$ROOT/$f" "$BUILD/"; done
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --cache-dir "$CACHE/pip" "$BUILD" \
  2> >(grep -v "^WARNING: Location .* is ignored" >&2)
chmod -R o+rX "$(dirname "$VENV")"
d=$(dirname "$VENV"); while [ "$d" != / ]; do chmod o+x "$d"; d=$(dirname "$d"); done
echo "setup-systemd: ready (user $TEST_USER uid $TEST_UID, venv $VENV)"
