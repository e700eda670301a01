#!/usr/bin/env bash
# Builds the PWA into frontend/dist when the frontend exists; idempotent.
set -euo pipefail
cd "$(dirname "$0")/../frontend"
if [ ! -f package.json ]; then
  echo "frontend: not implemented yet (hearth up serves a placeholder page)"
  exit 0
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  # Fallback: see scripts/install-test-deps.sh (npm 11 lockfiles and optional packages).
  npm ci --no-audit --no-fund --loglevel=error 2>/dev/null ||
    npm install --no-audit --no-fund --loglevel=error
fi
npm run build
