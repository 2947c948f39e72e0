#!/usr/bin/env bash
# Installs everything the test suite needs, then the real-environment lanes (systemd user manager,
# Windows under Wine) when run as root. Idempotent; safe to run again. Lanes that cannot be set up
# here are reported, and their tests skip with that reason.
set -uo pipefail
cd "$(dirname "$0")/../.."
export DAEMONKIT_TEST_CACHE="${DAEMONKIT_TEST_CACHE:-$HOME/.cache/daemonkit-tests}"
mkdir -p "$DAEMONKIT_TEST_CACHE"

python3 -m pip install -q --disable-pip-version-check -e ".[test]" || {
    echo "setup: 'pip install -e .[test]' failed; on a system Python (PEP 668) run this inside a venv" >&2
    exit 1
}

if [ "$(id -u)" != 0 ]; then
    echo "setup: not root: skipping the systemd and Wine lanes (their tests will say so)"
    exit 0
fi
for lane in tests/envs/setup-*.sh; do
    [ -e "$lane" ] || continue
    echo "setup: $lane"
    start=$SECONDS
    if bash "$lane"; then
        echo "setup: $lane done in $((SECONDS - start))s"
    else
        echo "setup: $lane FAILED (exit $?); its tests will be skipped with the reason" >&2
    fi
done
exit 0
