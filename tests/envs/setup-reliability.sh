#!/usr/bin/env bash
# The reliability lane (tests/reliability/): a second, unprivileged local user for the permission
# tests (another user must not reach or control a supervisor), and the util-linux tools used for
# private mount namespaces (disk full) and resource limits. Root only; idempotent.
set -euo pipefail
USER_NAME="${DAEMONKIT_TEST_USER2:-dktest2}"
if [ "$(id -u)" != 0 ]; then
    echo "setup-reliability: not root; the permission tests will skip" >&2
    exit 0
fi
if ! id "$USER_NAME" >/dev/null 2>&1; then
    # No home, no login shell: it only ever runs the one probe the tests give it.
    useradd --no-create-home --shell /usr/sbin/nologin --uid 4343 "$USER_NAME" 2>/dev/null \
        || useradd --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
fi
for tool in unshare prlimit setpriv mount; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux mount; break; }
done
echo "setup-reliability: user $USER_NAME (uid $(id -u "$USER_NAME")) ready"
