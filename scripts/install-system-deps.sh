#!/usr/bin/env bash
# Debian packages the tests and the demo need: redis-server (the shared dedup index in tests),
# g++ (fasttext builds from source) and python3.11 (the sandbox tests' unprivileged lane).
# Installs only what is missing.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
# The sandbox escape tests, run as root, repeat every case as uid 65534 with the system's Python of
# the same version when the project's interpreter is not readable by that user.
[ -x /usr/bin/python3.11 ] || missing+=(python3.11)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "mathforge needs these system packages: ${missing[*]} (Debian: apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
