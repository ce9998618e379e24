#!/usr/bin/env bash
# Install the Debian packages emotf's CPU pipeline and tests use, if they are missing:
#   relion        RELION's own motion correction and LoG picker (CPU backends)
#   redis-server  for the EMhub worker integration tests
#   chromium      to render the HTML report in its test
#   util-linux    setpriv, with which the fault tests drop root's file-permission override
#   python3-venv  only where python3 is Debian's own and cannot create virtual environments
set -euo pipefail
need=()
command -v relion_run_motioncorr >/dev/null 2>&1 || need+=(relion)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# headless Chromium renders report.html in the report test
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
for extra in "$@"; do
  dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
