#!/bin/sh
# install.sh installs the pinned Azurite (package.json / package-lock.json in
# this directory) into hack/azurite/node_modules. Tests find
# node_modules/.bin/azurite-blob there (or through $AZURITE_BLOB).
#
# Idempotent: when node_modules already matches package-lock.json it returns
# at once without touching the network.
set -eu
cd "$(dirname "$0")"

stamp=node_modules/.stationfleet-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -x node_modules/.bin/azurite-blob ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi

npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
echo "azurite installed: $(pwd)/node_modules/.bin/azurite-blob"
