#!/usr/bin/env bash
# Builds the PWA into frontend/dist when the frontend exists; idempotent.
set -euo pipefail
cd "$(dirname "$0")/../frontend"
if [ ! -f package.json ]; then
  echo "frontend: not implemented yet (hearth up serves a placeholder page)"
  exit 0
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run build
