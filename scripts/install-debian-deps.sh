#!/bin/sh
# Debian packages fleetfw's tests and lab need: real sshd, real netfilter,
# iptables-persistent (+ ipset-persistent: sets load at boot before the rules),
# a listener for probes, sudo for the non-root lab user, GNU time for the benchmark.
set -eu
export DEBIAN_FRONTEND=noninteractive
# iptables-persistent asks whether to save the current rules: it must not.
printf '%s\n' \
  'iptables-persistent iptables-persistent/autosave_v4 boolean false' \
  'iptables-persistent iptables-persistent/autosave_v6 boolean false' | debconf-set-selections 2>/dev/null || true
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  openssh-server openssh-client iptables iptables-persistent netfilter-persistent \
  ipset ipset-persistent time iproute2 socat netcat-openbsd sudo shellcheck procps util-linux ca-certificates >/dev/null
