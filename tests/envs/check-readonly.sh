#!/bin/bash
# check-readonly.sh [PYTEST ARGS...]: run the test suite with the real home and every real place outside
# tmp made read-only (a private mount namespace; the host is untouched), to prove that the sandbox keeps
# the suite inside tmp. A write anywhere else fails with EROFS, and so fails a test. Needs root and
# util-linux (unshare). The real-machine lanes (@pytest.mark.daemonkit_real) are left out: they write
# into their venv on purpose. Usage: bash tests/envs/check-readonly.sh -q -x
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null; then
  echo "check-readonly: needs root and unshare; nothing done" >&2
  exit 2
fi
export ROOT PYTHONDONTWRITEBYTECODE=1
exec unshare --mount --propagation private -- bash -c '
  set -eu
  tmp=$(python3 -c "import tempfile; print(tempfile.gettempdir())")
  for dir in "$HOME" "$ROOT" /etc /usr /opt /srv /var /root /home; do
    [ -d "$dir" ] || continue
    case "$tmp/" in "$dir"/*) echo "check-readonly: the temp dir $tmp is inside $dir; skipping it" >&2; continue;; esac
    mount --bind "$dir" "$dir"
    mount -o remount,bind,ro "$dir"
  done
  echo "check-readonly: read-only: \$HOME=$HOME, $ROOT, /etc /usr /opt /srv /var /root /home; writable: $tmp"
  cd "$ROOT"
  python3 -m pytest -p no:cacheprovider -m "not daemonkit_real" "$@"
' check-readonly "$@"
