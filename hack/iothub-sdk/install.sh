#!/bin/sh
# install.sh installs Microsoft's pinned azure-iothub service SDK
# (package.json / package-lock.json in this directory) into
# hack/iothub-sdk/node_modules. cmd/iothub-emulator's test runs check.js with
# it against the emulator command (or $IOTHUB_SDK_DIR when set).
#
# Idempotent: when node_modules already matches package-lock.json it returns
# at once without touching the network.
set -eu
cd "$(dirname "$0")"

stamp=node_modules/.stationfleet-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f node_modules/azure-iothub/package.json ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi

npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
echo "azure-iothub installed: $(pwd)/node_modules/azure-iothub"
