# shellcheck shell=sh
# Would these files load at boot? Run by loads_at_boot as
#   sh -c "$BOOT_TEST" fleetfw-boot-test V4 V6 SETS ERR NS
# in a throwaway network namespace (NS=yes), or here without one (NS=no: the sets
# are not loaded, only the rules tested). Loads as netfilter-persistent does: the
# sets, then the rules of each family, tested; a missing file is skipped. Exit 16 plus
# 1 (the sets failed), 2 (rules.v4), 4 (rules.v6), the stderr of each tool in ERR.s,
# ERR.4, ERR.6. 16 tells these answers from failures of unshare itself. Tested in
# programs.host.test.ts with stand-ins for the tools.
r=16
if [ -s "$3" ] && [ "$5" = yes ]; then
  if command -v ipset >/dev/null 2>&1; then ipset restore <"$3" 2>"$4.s" || r=$((r + 1)); else echo "ipset is not installed" >"$4.s"; r=$((r + 1)); fi
fi
[ ! -e "$1" ] || iptables-restore -t <"$1" 2>"$4.4" || r=$((r + 2))
[ ! -e "$2" ] || ip6tables-restore -t <"$2" 2>"$4.6" || r=$((r + 4))
exit "$r"
