#!/usr/bin/env bash
# The two programs the test suite needs beside Python packages, installed from Debian's packages when
# missing: Chromium for the HTML report's browser tests (tests/test_report_browser.py) and a Java
# runtime for Spark (tests/test_distributed_*.py). Needs root and apt-get; elsewhere it says what to
# install and stops, since the tests that need them fail without them (they are not skipped).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v java >/dev/null || missing+=(default-jre-headless)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  apt-get update -q && apt-get install -y -q "${missing[@]}"
else
  echo "the tests need: ${missing[*]} (Debian packages; as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
