#!/bin/sh
# Install what the browser tests need from Debian: chromium (driven by Playwright through
# executable_path, never a downloaded browser) and CJK fonts (without them Chinese labels
# render as empty boxes). Idempotent: does nothing when both are present.
set -eu

need=""
[ -x /usr/bin/chromium ] || need="chromium"
if ! dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null | grep -q "install ok installed"; then
    need="$need fonts-noto-cjk"
fi
[ -z "$need" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    # never prompt: the tests call this non-interactively (and skip, or fail under CI, without it)
    SUDO="sudo -n"
else
    SUDO=""
fi
echo "installing chromium and fonts-noto-cjk (missing:$need)" >&2
# Wait for another apt/dpkg run rather than failing on its lock.
$SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
    --no-install-recommends chromium fonts-noto-cjk >/dev/null
