#!/usr/bin/env bash
# Installs moto's server (the AWS emulator the tests use) into ~/.cache/stowage/venv once and
# prints the path of moto_server. A warm run installs nothing.
set -euo pipefail
MOTO_VERSION=5.2.5
venv=${STOWAGE_VENV:-$HOME/.cache/stowage/venv}
if [ -x "$venv/bin/moto_server" ] && [ -f "$venv/.moto-$MOTO_VERSION" ]; then
  echo "$venv/bin/moto_server"
  exit 0
fi
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
touch "$venv/.moto-$MOTO_VERSION"
echo "$venv/bin/moto_server"
