#!/usr/bin/env bash
# Build the investigator UI (web/) into src/tianluo/web/dist/, which `tianluo serve` serves.
# Packages come from the npm registry at build time (npm ci against package-lock.json); nothing
# is fetched at run time. Quick when nothing changed: it skips the build while the bundle is
# newer than every source file and the lock file. TIANLUO_WEB_FORCE=1 rebuilds anyway.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$ROOT/web"
DIST="$ROOT/src/tianluo/web/dist"
BUILT="$DIST/index.html"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "build-web: Node.js (>= 20.19) and npm are needed to build the web UI; install them (e.g. apt-get install nodejs npm) and re-run" >&2
    exit 1
fi

cd "$WEB"

# 1. Dependencies: (re)install when node_modules is missing or older than the lock file.
if [ -f package-lock.json ]; then
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        echo "build-web: npm ci" >&2
        npm ci --no-audit --no-fund --loglevel=error
    fi
elif [ ! -d node_modules ]; then
    echo "build-web: npm install (no package-lock.json)" >&2
    npm install --no-audit --no-fund --loglevel=error
fi

# 2. Build unless the bundle is newer than everything it is made from.
if [ -z "${TIANLUO_WEB_FORCE:-}" ] && [ -f "$BUILT" ]; then
    newer="$(find src public index.html package.json package-lock.json vite.config.ts tsconfig.json \
        -newer "$BUILT" -print -quit 2>/dev/null || true)"
    if [ -z "$newer" ]; then
        echo "build-web: up to date ($DIST)" >&2
        exit 0
    fi
fi

echo "build-web: building into $DIST" >&2
npm run --silent build -- --logLevel warn
touch "$BUILT"
