#!/usr/bin/env bash
# Installs everything the test suite needs, idempotently:
# Debian packages listed in scripts/apt-packages.txt, and `npm ci` for every
# Node helper under tests/ (each has a package.json and a committed lockfile).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
if [ -f scripts/apt-packages.txt ]; then
  while read -r pkg; do
    pkg="${pkg%%#*}"; pkg="$(echo "$pkg" | xargs)"
    [ -z "$pkg" ] && continue
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done < scripts/apt-packages.txt
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

while IFS= read -r lock; do
  dir="$(dirname "$lock")"
  stamp="$dir/node_modules/.hearth-lock"
  if [ -f "$stamp" ] && cmp -s "$lock" "$stamp"; then
    continue
  fi
  echo "npm ci in $dir"
  # npm 11 writes lockfiles without the platform-specific optional packages of
  # some dependencies (cbor-extract) and then refuses them in `npm ci`; `npm
  # install` honours the same lockfile (versions stay pinned) and leaves it as is.
  (cd "$dir" && { npm ci --no-audit --no-fund --loglevel=error 2>/dev/null ||
                  npm install --no-audit --no-fund --loglevel=error; })
  cp "$lock" "$stamp"
done < <(find tests bench -name package-lock.json -not -path '*/node_modules/*' 2>/dev/null | sort)
