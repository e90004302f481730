#!/usr/bin/env bash
# Install the Debian packages filmflow needs. Usage: install-system-deps.sh [run|test]
#   run : tesseract-ocr (+eng), dicom3tools (dciodvfy), fonts for the sample generator
#         (the tesserocr wheel from pyproject bundles libtesseract but no models: both OCR
#         engines read tesseract-ocr-eng's tessdata)
#   test: the above + orthanc (+dicomweb plugin), chromium, dcmtk, postgresql
set -euo pipefail
profile="${1:-run}"
pkgs=(tesseract-ocr tesseract-ocr-eng dicom3tools fonts-dejavu-core fonts-liberation)
if [ "$profile" = "test" ]; then
  pkgs+=(orthanc orthanc-dicomweb chromium dcmtk postgresql)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian starts orthanc/postgresql as services on install; the tests start their own instances.
if [ "$profile" = "test" ]; then
  (command -v service >/dev/null && $SUDO service orthanc stop) >/dev/null 2>&1 || true
fi
