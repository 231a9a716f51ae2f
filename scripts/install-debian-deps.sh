#!/bin/sh
# Debian packages fleetfw's tests and lab need: real sshd, real netfilter,
# iptables-persistent (+ ipset-persistent: sets load at boot before the rules),
# a listener for probes, sudo for the non-root lab user, GNU time for the benchmark,
# headless Chromium for the HTML plan's browser test (about 500 MB, ~15 s).
set -eu
# Root installs packages: as root (containers, minimal images) it runs as is;
# otherwise it runs itself again through sudo.
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-debian-deps.sh: run it as root (sudo is not installed)" >&2; exit 1; }
  exec sudo sh "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
# iptables-persistent asks whether to save the current rules: it must not.
printf '%s\n' \
  'iptables-persistent iptables-persistent/autosave_v4 boolean false' \
  'iptables-persistent iptables-persistent/autosave_v6 boolean false' | debconf-set-selections 2>/dev/null || true
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  openssh-server openssh-client iptables iptables-persistent netfilter-persistent \
  ipset ipset-persistent time iproute2 socat netcat-openbsd sudo shellcheck procps util-linux ca-certificates chromium >/dev/null
