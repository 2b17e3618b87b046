#!/usr/bin/env bash
# Installs the Debian packages the project uses, only those that are missing:
# espeak-ng (text -> phones, synthetic speech), flite and festival (reference corpora),
# festlex-cmu (CMUdict, the default English lexicon of alignment), chromium (browser tests).
# Without root it only reports what is missing.
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in espeak-ng libespeak-ng1 flite festival festlex-cmu festvox-us-slt-hts chromium sox; do
  have "$pkg" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages (install them as root): ${need[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
