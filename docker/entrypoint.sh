#!/bin/sh
# One entrypoint for the S1 fleet of docker-compose.yml.
#   entrypoint.sh keys     one-shot, first: the operator's key pair in /fleet (kept across restarts)
#   entrypoint.sh server   a server: interfaces named as the inventory says, host key kept in
#                          /fleet/hostkeys, its line in /fleet/known_hosts, then sshd
# Environment: PUBLIC_ADDRESS, PRIVATE_ADDRESS, SSH_USER (default root), OPERATOR_UID.
set -eu
F=/fleet

make_keys() {
  mkdir -p "$F/hostkeys" "$F/known_hosts.d"
  [ -f "$F/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C fleetfw-operator -f "$F/id_ed25519"
  # The operator runs fleetfw as an ordinary user on the Docker host.
  chown "${OPERATOR_UID:-0}" "$F/id_ed25519" "$F/id_ed25519.pub"
}

iface_of() { ip -o -4 addr show | awk -v a="$1" '{ split($4, p, "/"); if (p[1] == a) { print $2; exit } }'; }

# Docker names interfaces in the order it attaches networks; the inventory
# says eth0 is public and eth1 private, so rename by address when needed.
name_iface() { # ADDRESS WANTED
  cur=$(iface_of "$1")
  [ -n "$cur" ] || { echo "entrypoint: no interface has $1" >&2; exit 1; }
  [ "$cur" = "$2" ] && return 0
  ip link set "$cur" down
  if ip link show "$2" >/dev/null 2>&1; then
    ip link set "$2" down
    ip link set "$2" name "tmp-$2"
  fi
  ip link set "$cur" name "$2"
  ip link set "$2" up
}

serve() {
  name=$(hostname)
  gw=$(ip route show default | awk '{ print $3; exit }')
  name_iface "$PUBLIC_ADDRESS" eth0
  name_iface "$PRIVATE_ADDRESS" eth1
  for i in $(ip -o link show | awk -F': ' '$2 ~ /^tmp-/ { print $2 }'); do ip link set "$i" up; done
  # A link going down drops its routes; the connected ones come back with it, the default does not.
  [ -z "$gw" ] || ip route replace default via "$gw" 2>/dev/null || true

  key=$F/hostkeys/$name
  [ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$key"
  echo "$name,$PUBLIC_ADDRESS,$PRIVATE_ADDRESS $(cut -d' ' -f1,2 "$key.pub")" >"$F/known_hosts.d/$name"
  # Every server rebuilds the whole file from every line written so far: the last one sees them all.
  cat "$F"/known_hosts.d/* >"$F/known_hosts.$name.tmp" && mv "$F/known_hosts.$name.tmp" "$F/known_hosts"
  chown "${OPERATOR_UID:-0}" "$F/known_hosts" 2>/dev/null || true

  user=${SSH_USER:-root}
  if [ "$user" != root ] && ! id "$user" >/dev/null 2>&1; then
    useradd -m -s /bin/sh "$user"
    echo "$user ALL=(ALL) NOPASSWD: ALL" >"/etc/sudoers.d/$user"
    chmod 0440 "/etc/sudoers.d/$user"
  fi
  home=$(getent passwd "$user" | cut -d: -f6)
  mkdir -p "$home/.ssh"
  cp "$F/id_ed25519.pub" "$home/.ssh/authorized_keys"
  chown -R "$user" "$home/.ssh"
  chmod 0700 "$home/.ssh"
  chmod 0600 "$home/.ssh/authorized_keys"

  mkdir -p /run/sshd
  exec /usr/sbin/sshd -D -e -o "HostKey=$key" -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password
}

case "${1:-server}" in
  keys) make_keys ;;
  server) serve ;;
  *) echo "usage: entrypoint.sh keys|server" >&2; exit 64 ;;
esac
