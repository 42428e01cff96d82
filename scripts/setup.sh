#!/usr/bin/env bash
# Installs what Lightbox needs on a fresh Debian machine (root or sudo, apt and pip reachable):
# the system services it runs against and the Python package in ./.venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

SYSTEM_PACKAGES=(
  python3 python3-venv python3-dev gcc          # the interpreter and a compiler for wheels that need one
  postgresql                                    # the scale-path database (tests start their own server)
  orthanc orthanc-dicomweb                      # a real PACS with DICOMweb (tests start their own)
  chromium                                      # headless browser for the share viewer tests
  dcmtk                                         # dcmj2pnm, the rendering reference
  fonts-dejavu-core                             # text on rendered pictures
  iproute2 util-linux                           # ip + unshare: tests run with only loopback up
  ca-certificates
)

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "lightbox setup: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,dev]'
echo "lightbox setup: ready (.venv)"
