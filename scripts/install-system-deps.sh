#!/usr/bin/env bash
# System packages the tests and the audio tools need. Debian/Ubuntu only; skipped when present.
#   espeak-ng, sox  : synthesize and measure whole-call test audio
#   postgresql      : the audit/store tests run against PostgreSQL as well as SQLite
#   redis-server    : the cluster tests run two and three nodes on one real Redis
#   chromium        : browser tests of client_js (driven by playwright-core, never a downloaded browser)
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "missing system packages: ${need[*]} (run as root or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
