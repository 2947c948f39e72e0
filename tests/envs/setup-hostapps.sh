#!/bin/bash
# setup-hostapps.sh: what the host-app tests need beyond daemonkit's own dependencies: click, for the
# click adapter (daemonkit.integrations.click; optional for users, so not a dependency). Idempotent.
# Without it, tests/test_hostapps.py skips the click tests and says why.
set -eu
CACHE=${DAEMONKIT_TEST_CACHE:-$HOME/.cache/daemonkit-tests}
if python3 -c 'import click' 2>/dev/null; then
  echo "setup-hostapps: click present"
  exit 0
fi
mkdir -p "$CACHE/pip"
python3 -m pip install -q --disable-pip-version-check --cache-dir "$CACHE/pip" "click>=8.0"
echo "setup-hostapps: click installed"
