#!/bin/sh
# fleetfw host side. Run by fleetfw over SSH as
#   [sudo -n] sh -c '<this file>' fleetfw-host VERB ARGS...
# ARGS are checked by fleetfw against ^[A-Za-z0-9._:/=@+-]+$; rule sets arrive
# on stdin. Nothing is installed: state lives in $FLEETFW_STATE (0700).
#
# Transaction (one at a time per host, the txn/ directory is the lock):
#   prepare  test, back up, arm the revert, load     -> txn/pending.TXID exists
#   confirm  (over a NEW connection) rename pending.TXID -> confirmed.TXID, persist
#   revert   (timer or failure) rename pending.TXID -> reverting.TXID, restore backup
# The rename is the single atomic step that decides between confirm and revert.
# The markers carry the transaction id so that a late watchdog of an earlier
# transaction can never touch a later one.
# A && B || die is the intended idiom here: die when either step fails.
# shellcheck disable=SC2015
set -eu

S=${FLEETFW_STATE:-/var/lib/fleetfw}
T=$S/txn
PERSIST_DIR=${FLEETFW_PERSIST_DIR:-/etc/iptables}
SPLIT='# fleetfw-split v6'
SETS_SPLIT='# fleetfw-split ipsets'

# Exit codes, mirrored in src/host/protocol.ts.
E_USAGE=64 E_TEST=65 E_LOAD=66 E_LOCKED=75 E_STALE=76 E_NOTXN=70 E_CHANGED=71 E_LATE=72 E_ARM=73 E_TOOL=74 E_SPACE=77

die() { code=$1; shift; echo "fleetfw-host: $*" >&2; exit "$code"; }
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
# First line of a file ($2 when it is missing), read by the shell itself: these
# run many times per transaction and each `cat` would be a process.
val() { v=${2:-}; [ ! -r "$1" ] || IFS= read -r v <"$1" || true; printf '%s\n' "$v"; }
boot_id() { val /proc/sys/kernel/random/boot_id unknown; }
has() { command -v "$1" >/dev/null 2>&1; }

# Fault injection for the end-to-end tests: pause at a step while the file
# $S/faults/pause-NAME exists (at most 60 s). Inert in production: $S is 0700
# root, so only root on the host could arm it.
fault_point() {
  [ -e "$S/faults/pause-$1" ] || return 0
  : >"$S/faults/at-$1" 2>/dev/null || true
  fp_n=0
  while [ -e "$S/faults/pause-$1" ] && [ "$fp_n" -lt 600 ]; do sleep 0.1; fp_n=$((fp_n + 1)); done
}

# A dump without comments and counters: what "the same rules" means for hashes.
normalize() { sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]$/[0:0]/'; }
save4() { iptables-save 2>/dev/null || true; }
save6() { ip6tables-save 2>/dev/null || true; }
# fleetfw's own ipsets (fleetfw-*) in a stable form: create lines cut to name,
# type and family, sorted. A host without them hashes as it always did.
sets_norm() { awk '($1 == "create" || $1 == "add") && $2 ~ /^fleetfw-/ { if ($1 == "create") print $1, $2, $3, $4, $5; else print }' | LC_ALL=C sort; }
live_sets() { if has ipset; then ipset save 2>/dev/null | sets_norm; fi; }
with_sets() { [ -z "$1" ] || printf -- '---\n%s\n' "$1"; }
sha() { sum=$(sha256sum); printf '%s\n' "${sum%% *}"; }
live_hash() { lh_sets=$(live_sets); { save4 | normalize; echo '---'; save6 | normalize; with_sets "$lh_sets"; } | sha; }
# The same bytes as live_hash, from dumps already in files (V4 V6 NORMALISED-SETS).
hash_dumps() {
  { [ ! -f "$1" ] || normalize <"$1"; echo '---'; [ ! -f "$2" ] || normalize <"$2"; [ ! -s "$3" ] || { echo '---'; cat "$3"; }; } | sha
}

backend() { # the output of `iptables -V`
  case "$1" in
    *nf_tables*) b=nft ;;
    *legacy*) b=legacy ;;
    '') echo none; return ;;
    *) b=legacy ;;
  esac
  # Rules in the other backend too means two firewalls: refuse to guess. Legacy
  # tables are listed in /proc/net/ip_tables_names: nothing there, nothing to read.
  if [ "$b" = nft ] && [ -s /proc/net/ip_tables_names ] && has iptables-legacy-save \
    && iptables-legacy-save 2>/dev/null | grep -q '^-A'; then b=mixed; fi
  if [ "$b" = legacy ] && has iptables-nft-save && iptables-nft-save 2>/dev/null | grep -q '^-A'; then b=mixed; fi
  echo "$b"
}

# Is the transaction's revert still armed (watchdog process or systemd timer)?
watchdog_alive() {
  [ -f "$T/watchdog" ] || return 1
  # After a reboot the recorded pid (or transient unit) is gone; the same pid
  # may belong to another process now, so it proves nothing.
  [ "$(val "$T/boot_id")" = "$(boot_id)" ] || return 1
  case "$(val "$T/watchdog")" in
    pid:*) kill -0 "$(cut -d: -f2 "$T/watchdog")" 2>/dev/null ;;
    unit:*) systemctl is-active --quiet "$(cut -d: -f2 "$T/watchdog").timer" 2>/dev/null ;;
    *) return 1 ;;
  esac
}

txn_state() {
  id=$(val "$T/id" none)
  for st in pending confirmed reverting; do [ -e "$T/$st.$id" ] && { echo "$st"; return; }; done
  echo preparing
}

record() { echo "$(now) $*" >>"$S/history.log"; }

# Close out a transaction directory: keep the last few for inspection.
retire_txn() {
  mkdir -p "$S/txns"
  id=$(val "$T/id" unknown)
  rm -rf "$S/txns/$id"
  mv "$T" "$S/txns/$id"
  prune "$S/txns" 5
}

# Keep the newest KEEP entries of DIR: their names sort by age (zero-padded
# generation numbers, timestamped transaction ids), and a glob sorts them.
prune() { # DIR KEEP
  keep=$2
  set -- "$1"/*
  [ -e "$1" ] || return 0
  n=$(( $# - keep ))
  while [ "$n" -gt 0 ]; do rm -rf "$1"; shift; n=$((n - 1)); done
}

# A transaction left behind by a crash, a kill or a reboot: settle it so that
# the host is on its old rules and the lock is free. Prints what it did.
recover_stale() {
  [ -d "$T" ] || return 0
  if watchdog_alive; then return 1; fi
  st=$(txn_state)
  # A transaction still being prepared (or arming its watchdog) is not stale.
  # Not written yet (a prepare that has just taken the lock): the lock's own age
  # counts, so a fresh lock is never mistaken for an ancient one and stolen.
  since=$(val "$T/started_epoch")
  case "$since" in ''|*[!0-9]*) since=$(stat -c %Y "$T" 2>/dev/null || date +%s) ;; esac
  age=$(( $(date +%s) - since ))
  if [ "$age" -lt 120 ] && { [ "$st" = preparing ] || { [ "$st" = pending ] && [ ! -s "$T/watchdog" ]; }; }; then
    return 1
  fi
  same_boot=no
  [ "$(val "$T/boot_id")" = "$(boot_id)" ] && same_boot=yes
  case "$st" in
    pending)
      if [ "$same_boot" = yes ] && [ -f "$T/revert.sh" ]; then
        sh "$T/revert.sh" "$(val "$T/id")" now "stale transaction without a watchdog" >&2 || true
        [ -d "$T" ] && retire_txn
        echo "recovered: reverted stale transaction"
      else
        mv "$T/pending.$(val "$T/id")" "$T/reverting.$(val "$T/id")" 2>/dev/null || true
        record "$(val "$T/id") reverted-by-reboot"
        retire_txn
        echo "recovered: host rebooted inside the window; it booted its persisted rules"
      fi ;;
    confirmed)
      # Confirmed but persist did not finish: persist now what runs.
      persist_live
      record "$(val "$T/id") confirmed-persist-recovered"
      retire_txn
      echo "recovered: finished persisting a confirmed transaction" ;;
    reverting)
      # The revert died half-way: finish it.
      iptables-restore <"$T/backup.v4" || true
      ip6tables-restore <"$T/backup.v6" || true
      [ ! -f "$T/ipset-load.sh" ] || sh "$T/ipset-load.sh" "$T/backup.sets" || true
      record "$(val "$T/id") reverted-recovered"
      retire_txn
      echo "recovered: finished an interrupted revert" ;;
    *)
      record "$(val "$T/id") abandoned-$st"
      retire_txn
      echo "recovered: removed a transaction abandoned while $st (rules untouched)" ;;
  esac
}

# Write rules.v4/rules.v6 atomically from what runs: temp file, fsync, rename.
persist_live() {
  [ -d "$PERSIST_DIR" ] || mkdir -m 0755 "$PERSIST_DIR"
  for fam in 4 6; do
    tmp="$PERSIST_DIR/.rules.v$fam.fleetfw-tmp"
    if [ "$fam" = 4 ]; then save4 >"$tmp"; else save6 >"$tmp"; fi
    chmod 0640 "$tmp"
    sync "$tmp" 2>/dev/null || sync
    mv -f "$tmp" "$PERSIST_DIR/rules.v$fam"
    if [ "$fam" = 4 ]; then fault_point persist; fi
  done
  # The ipsets the rules match: ipset-persistent loads them at boot, before the rules.
  if has ipset && { [ -n "$(ipset list -n 2>/dev/null)" ] || [ -f "$PERSIST_DIR/ipsets" ]; }; then
    tmp="$PERSIST_DIR/.ipsets.fleetfw-tmp"
    ipset save >"$tmp"
    chmod 0640 "$tmp"
    sync "$tmp" 2>/dev/null || sync
    mv -f "$tmp" "$PERSIST_DIR/ipsets"
  fi
  sync "$PERSIST_DIR" 2>/dev/null || sync
}

# Read "v4 text, split line, v6 text" from stdin into two files.
split_stdin() { # v4-file v6-file [ipsets-file]
  awk -v a="$1" -v b="$2" -v c="${3:-/dev/null}" -v split_line="$SPLIT" -v sets_line="$SETS_SPLIT" '
    $0 == split_line { out = b; next }
    $0 == sets_line { out = c; next }
    { print > (out ? out : a) }
    END { printf "" > b; printf "" > c }' || die "$E_SPACE" "cannot write $1: disk full?"
}

# A backup that really restores: every table the candidate replaces must be in
# it, so a table that did not exist before is reset to empty (policies ACCEPT).
make_backup() { # live-dump candidate out
  cp "$1" "$3"
  # shellcheck disable=SC2013 # table names are single words
  for table in $(sed -n 's/^\*//p' "$2"); do
    grep -qx "\*$table" "$1" && continue
    case "$table" in
      filter|security) chains="INPUT FORWARD OUTPUT" ;;
      nat) chains="PREROUTING INPUT OUTPUT POSTROUTING" ;;
      mangle) chains="PREROUTING INPUT FORWARD OUTPUT POSTROUTING" ;;
      raw) chains="PREROUTING OUTPUT" ;;
      *) die "$E_USAGE" "unknown table $table" ;;
    esac
    { echo "*$table"; for c in $chains; do echo ":$c ACCEPT [0:0]"; done; echo COMMIT; } >>"$3"
  done
}

write_revert_script() {
  cat >"$T/revert.sh" <<'REVERT'
#!/bin/sh
# fleetfw revert: restore the backup unless the transaction was confirmed first.
#   revert.sh TXID watchdog SECONDS | revert.sh TXID timer | revert.sh TXID now REASON
S=${FLEETFW_STATE:-/var/lib/fleetfw}
T=$S/txn
id=$1
mode=$2
reason=${3:-}
if [ "$mode" = watchdog ]; then
  trap '' HUP INT TERM
  echo "pid:$$" >"$T/watchdog"
  sleep "$3"
  reason="no confirmation within ${3}s"
fi
[ "$mode" = timer ] && reason="no confirmation within the window"
# The one atomic step: whoever renames this transaction's marker first decides.
mv "$T/pending.$id" "$T/reverting.$id" 2>/dev/null || exit 0
rc=0
[ ! -f "$T/ipset-load.sh" ] || sh "$T/ipset-load.sh" "$T/backup.sets" || rc=1
iptables-restore <"$T/backup.v4" || rc=1
ip6tables-restore <"$T/backup.v6" || rc=1
# Sets this transaction created: nothing matches them any more.
[ ! -f "$T/sets.created" ] || while read -r set; do ipset destroy "$set" 2>/dev/null || true; done <"$T/sets.created"
if [ "$rc" = 0 ]; then result=reverted; else result=revert-failed; fi
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $id $result $reason" >>"$S/history.log"
echo "$result: $reason" >"$T/outcome"
mkdir -p "$S/txns"
rm -rf "$S/txns/$id"
mv "$T" "$S/txns/$id"
exit "$rc"
REVERT
  cat >"$T/ipset-load.sh" <<'IPSETS'
#!/bin/sh
# fleetfw ipset-load.sh FILE: give each set in FILE (`ipset save` format) exactly
# FILE's members, atomically per set: fill a temporary set, swap, destroy it.
# A set that does not exist yet is created first.
set -e
[ -s "$1" ] || exit 0
ipset destroy fleetfw--swap 2>/dev/null || true
{ ipset list -n; echo '--- sets'; cat "$1"; } | awk '
  function flush() { if (name != "") { print "swap fleetfw--swap " name; print "destroy fleetfw--swap" } }
  !body { if ($0 == "--- sets") body = 1; else have[$1] = 1; next }
  $1 == "create" { flush(); name = $2; if (!(name in have)) print; $2 = "fleetfw--swap"; print; next }
  $1 == "add" { $2 = "fleetfw--swap"; print }
  END { flush() }' | ipset restore
IPSETS
}

arm_watchdog() { # window txid
  if [ -d /run/systemd/system ] && has systemd-run; then
    unit="fleetfw-revert-$2"
    systemd-run --quiet --unit "$unit" --on-active="$1s" --timer-property=AccuracySec=100ms \
      --setenv=FLEETFW_STATE="$S" /bin/sh "$T/revert.sh" "$2" timer >/dev/null 2>&1 \
      || die "$E_ARM" "systemd-run could not arm the revert timer"
    echo "unit:$unit" >"$T/watchdog"
  else
    FLEETFW_STATE="$S" setsid -f /bin/sh "$T/revert.sh" "$2" watchdog "$1" </dev/null >/dev/null 2>&1
    i=0
    while [ ! -s "$T/watchdog" ]; do
      i=$((i + 1))
      # Polled finely: the watchdog is usually up within a few ms, and every host waits here.
      [ "$i" -gt 500 ] && die "$E_ARM" "the revert watchdog did not start"
      sleep 0.01
    done
  fi
}

cmd_facts() {
  [ -d "$S" ] || { mkdir -p "$S" && chmod 0700 "$S"; }
  # Every dump once, into files: they are hashed and printed (a plan runs this on
  # every host, so each process saved here is saved fleet-wide).
  d=$(mktemp -d)
  save4 >"$d/l4"
  save6 >"$d/l6"
  : >"$d/ls"
  if has ipset; then live_sets >"$d/ls"; fi
  : >"$d/ps"
  [ ! -f "$PERSIST_DIR/ipsets" ] || sets_norm <"$PERSIST_DIR/ipsets" >"$d/ps"
  ipt_v=$(iptables -V 2>/dev/null || true)
  echo "fleetfw-facts 1"
  echo "backend=$(backend "$ipt_v")"
  if [ -d /run/systemd/system ]; then echo "systemd=yes"; else echo "systemd=no"; fi
  if has iptables-restore && has ip6tables-restore; then echo "restore=yes"; else echo "restore=no"; fi
  if has netfilter-persistent || [ -d /usr/share/netfilter-persistent ]; then echo "persistent=yes"; else echo "persistent=no"; fi
  if has ipset; then echo "ipset=yes"; else echo "ipset=no"; fi
  if [ -e /usr/share/netfilter-persistent/plugins.d/10-ipset ]; then echo "ipset_persistent=yes"; else echo "ipset_persistent=no"; fi
  echo "generation=$(val "$S/current" 0)"
  if [ -d "$T" ]; then
    alive=no; watchdog_alive && alive=yes
    echo "txn=$(val "$T/id" unknown) state=$(txn_state) watchdog=$alive started=$(val "$T/started" unknown) user=$(val "$T/user" unknown)"
  else
    echo "txn=none"
  fi
  echo "live_hash=$(hash_dumps "$d/l4" "$d/l6" "$d/ls")"
  echo "persisted_hash=$(hash_dumps "$PERSIST_DIR/rules.v4" "$PERSIST_DIR/rules.v6" "$d/ps")"
  echo "boot_id=$(boot_id)"
  echo "--- v4"
  cat "$d/l4"
  echo "--- v6"
  cat "$d/l6"
  if has ipset; then echo "--- ipsets"; cat "$d/ls"; fi
  rm -rf "$d"
  # Listening sockets, so a live plan can warn about services the new rules block.
  echo "--- listeners"
  listeners
  # Optional: candidate rules on stdin, printed back the way this host's own
  # iptables-save prints them, from a throwaway network namespace. Skipped when
  # this host runs the iptables that fleetfw's own formatter is verified against
  # ($2): the restore costs more than everything else facts does.
  if [ "${1:-}" = canonical ]; then
    echo "--- canonical"
    # `iptables v1.8.9 (nf_tables)` -> 1.8.9-nf_tables, without a process.
    version=${ipt_v#iptables v}
    backend_name=${version#* (}
    version=${version%% *}-${backend_name%)}
    if [ -n "${2:-}" ] && [ "$version" = "$2" ]; then
      echo "skipped: iptables $version"
      echo "--- end"
      return 0
    fi
    d=$(mktemp -d)
    split_stdin "$d/c4" "$d/c6" "$d/cs"
    # shellcheck disable=SC2016 # expanded by the inner shell
    # Sets are per network namespace: the candidate's must exist there for its rules to load.
    if unshare -n sh -c '{ [ ! -s "$3" ] || ipset restore <"$3"; } && iptables-restore <"$1" && ip6tables-restore <"$2" && iptables-save && echo "--- canonical-v6" && ip6tables-save' \
      sh "$d/c4" "$d/c6" "$d/cs" >"$d/out" 2>"$d/err"; then
      cat "$d/out"
    else
      echo "unavailable: $(head -c 300 "$d/err" | tr '\n' ' ')"
    fi
    rm -rf "$d"
  fi
  echo "--- end"
}

# The candidate matches ipsets: back up the live fleetfw sets for the revert, then
# create the missing ones empty, so that `iptables-restore -t` finds them (no
# rule uses them yet). Their members are loaded after the revert is armed.
prepare_sets() {
  has ipset || die "$E_TOOL" "the rules match ipsets but ipset is not installed on this host (apt-get install ipset ipset-persistent)"
  [ -e /usr/share/netfilter-persistent/plugins.d/10-ipset ] \
    || die "$E_TOOL" "the rules match ipsets but ipset-persistent is not installed: the host would boot its rules without their sets (apt-get install ipset-persistent)"
  ipset save 2>/dev/null | awk '($1 == "create" || $1 == "add") && $2 ~ /^fleetfw-/' >"$T/backup.sets"
  { ipset list -n 2>/dev/null; echo '--- sets'; cat "$T/candidate.sets"; } \
    | awk '!body { if ($0 == "--- sets") body = 1; else have[$1] = 1; next } $1 == "create" && !($2 in have)' >"$T/sets.new"
  awk '{ print $2 }' "$T/sets.new" >"$T/sets.created"
  [ ! -s "$T/sets.new" ] || ipset restore <"$T/sets.new" 2>"$T/test.err" || die "$E_TEST" "cannot create the ipsets: $(head -c 500 "$T/test.err")"
}

# A prepare that fails before the load leaves no set of its own behind.
drop_new_sets() {
  [ -f "$T/sets.created" ] || return 0
  while read -r set; do ipset destroy "$set" 2>/dev/null || true; done <"$T/sets.created"
}

cmd_prepare() { # TXID WINDOW EXPECTED_HASH USER PLAN_HASH
  [ $# -eq 5 ] || die "$E_USAGE" "prepare TXID WINDOW EXPECTED_HASH USER PLAN_HASH"
  txid=$1 window=$2 expected=$3
  has iptables-restore && has ip6tables-restore || die "$E_TOOL" "iptables-restore/ip6tables-restore not found on this host"
  mkdir -p "$S" && chmod 0700 "$S"
  # Room for the candidate, backups and markers, checked before any step: running
  # out after the load would leave loaded rules without their records.
  free_kb=$(df -Pk "$S" 2>/dev/null | awk 'NR == 2 { print $4 }')
  [ -z "$free_kb" ] || [ "$free_kb" -ge 1024 ] || die "$E_SPACE" "only ${free_kb} KB free in $S (fleetfw needs 1024 KB): disk full?"
  if ! mkdir "$T" 2>/dev/null; then
    if recover_stale >&2; then mkdir "$T" 2>/dev/null || die "$E_LOCKED" "another transaction started meanwhile"
    else
      die "$E_LOCKED" "locked by transaction $(val "$T/id") of $(val "$T/user") since $(val "$T/started"); its revert is armed"
    fi
  fi
  # From here on, any failure before the load must release the lock.
  trap 'drop_new_sets; rm -rf "$T"' EXIT
  fault_point lock
  echo "$txid" >"$T/id" && echo "$4" >"$T/user" && echo "$5" >"$T/plan_hash" && now >"$T/started" && date +%s >"$T/started_epoch" \
    && boot_id >"$T/boot_id" || die "$E_SPACE" "cannot write $T: disk full?"
  split_stdin "$T/candidate.v4" "$T/candidate.v6" "$T/candidate.sets"
  fault_point upload
  if [ "$expected" != "-" ]; then
    actual=$(live_hash)
    [ "$actual" = "$expected" ] || die "$E_STALE" "live rules changed since they were read (expected $expected, found $actual)"
  fi
  [ ! -s "$T/candidate.sets" ] || prepare_sets
  iptables-restore -t <"$T/candidate.v4" 2>"$T/test.err" || die "$E_TEST" "iptables-restore -t refused the IPv4 rules: $(head -c 500 "$T/test.err")"
  ip6tables-restore -t <"$T/candidate.v6" 2>"$T/test.err" || die "$E_TEST" "ip6tables-restore -t refused the IPv6 rules: $(head -c 500 "$T/test.err")"
  save4 >"$T/live.v4" && save6 >"$T/live.v6" || die "$E_SPACE" "cannot write the backup: disk full?"
  make_backup "$T/live.v4" "$T/candidate.v4" "$T/backup.v4" && make_backup "$T/live.v6" "$T/candidate.v6" "$T/backup.v6" \
    || die "$E_SPACE" "cannot write the backup: disk full?"
  write_revert_script || die "$E_SPACE" "cannot write the revert script: disk full?"
  : >"$T/pending.$txid" || die "$E_SPACE" "cannot write $T/pending.$txid: disk full?"
  fault_point backup
  arm_watchdog "$window" "$txid"
  fault_point arm
  trap - EXIT
  # Armed: from now on the revert script owns the rollback.
  # Sets first: the new rules must find their members when they start matching.
  if ! sh "$T/ipset-load.sh" "$T/candidate.sets" 2>"$T/load.err" || ! iptables-restore <"$T/candidate.v4" 2>>"$T/load.err" \
    || ! ip6tables-restore <"$T/candidate.v6" 2>>"$T/load.err"; then
    err=$(head -c 500 "$T/load.err")
    sh "$T/revert.sh" "$txid" now "the load failed: $err" || true
    die "$E_LOAD" "loading the rules failed, previous rules restored: $err"
  fi
  live_hash >"$T/loaded_hash"
  record "$txid prepared user=$4 plan=$5 window=$window"
  fault_point load
  echo "loaded txid=$txid hash=$(val "$T/loaded_hash")"
}

cmd_confirm() { # TXID KEEP SOURCE
  [ $# -eq 3 ] || die "$E_USAGE" "confirm TXID KEEP SOURCE"
  txid=$1 keep=$2 source=$3
  if [ ! -d "$T" ] || [ "$(val "$T/id")" != "$txid" ]; then
    outcome=$(val "$S/txns/$txid/outcome" "unknown transaction")
    die "$E_NOTXN" "transaction $txid is not pending: $outcome"
  fi
  if [ "$(val "$T/boot_id")" != "$(boot_id)" ]; then
    recover_stale >&2 || true
    die "$E_CHANGED" "the host rebooted inside the window: it runs its persisted rules"
  fi
  if [ "$(live_hash)" != "$(val "$T/loaded_hash")" ]; then
    sh "$T/revert.sh" "$txid" now "rules changed inside the window" || true
    die "$E_CHANGED" "the live rules changed inside the window; reverted"
  fi
  fault_point confirm
  mv "$T/pending.$txid" "$T/confirmed.$txid" 2>/dev/null || die "$E_LATE" "too late: the revert won the race"
  # Confirmed: finish even if the session dies now.
  trap '' HUP INT TERM PIPE
  case "$(val "$T/watchdog")" in
    pid:*) kill -KILL "$(cut -d: -f2 "$T/watchdog")" 2>/dev/null || true ;;
    unit:*) systemctl stop "$(cut -d: -f2 "$T/watchdog").timer" >/dev/null 2>&1 || true ;;
  esac
  # fleetfw sets the confirmed rules no longer match (a set in use refuses to go).
  if has ipset; then
    for set in $(ipset list -n 2>/dev/null | grep '^fleetfw-' || true); do
      grep -q "^create $set " "$T/candidate.sets" 2>/dev/null || ipset destroy "$set" 2>/dev/null || true
    done
  fi
  persist_live
  gen=$(( $(val "$S/current" 0) + 1 ))
  g=$S/generations/$(printf '%06d' "$gen")
  mkdir -p "$g"
  cp "$T/candidate.v4" "$g/rules.v4" && cp "$T/candidate.v6" "$g/rules.v6"
  [ ! -s "$T/candidate.sets" ] || cp "$T/candidate.sets" "$g/ipsets"
  {
    echo "generation=$gen"; echo "txid=$txid"; echo "user=$(val "$T/user")"; echo "when=$(now)"
    echo "plan_hash=$(val "$T/plan_hash")"; echo "source=$source"; echo "hash=$(val "$T/loaded_hash")"
  } >"$g/meta"
  echo "$gen" >"$S/current.tmp" && mv "$S/current.tmp" "$S/current"
  prune "$S/generations" "$keep"
  record "$txid confirmed generation=$gen"
  echo "confirmed: generation $gen" >"$T/outcome"
  retire_txn
  echo "confirmed generation=$gen"
}

cmd_abort() { # TXID REASON
  [ $# -eq 2 ] || die "$E_USAGE" "abort TXID REASON"
  [ -d "$T" ] && [ "$(val "$T/id")" = "$1" ] || die "$E_NOTXN" "transaction $1 is not pending"
  sh "$T/revert.sh" "$1" now "$2" || die "$E_LOAD" "the revert failed"
  echo "reverted"
}

cmd_history() {
  for g in "$S"/generations/*/meta; do [ -f "$g" ] && { echo "--- generation"; cat "$g"; }; done
  echo "--- log"
  tail -n 200 "$S/history.log" 2>/dev/null || true
  echo "--- end"
}

cmd_generation() { # N
  g=$S/generations/$(printf '%06d' "$1")
  [ -f "$g/rules.v4" ] || die "$E_NOTXN" "no generation $1 on this host"
  cat "$g/rules.v4"; echo "$SPLIT"; cat "$g/rules.v6"
  if [ -f "$g/ipsets" ]; then echo "$SETS_SPLIT"; cat "$g/ipsets"; fi
}

# Listening TCP and UDP sockets as `ss -ltnup` prints them (seed 003's discovery step).
listeners() {
  if has ss; then ss -ltnup 2>/dev/null || true; else echo "unavailable: ss not found"; fi
}

cmd_listeners() { echo "--- listeners"; listeners; echo "--- end"; }

cmd_show() { # TABLE exact|human
  [ $# -eq 2 ] || die "$E_USAGE" "show TABLE exact|human"
  case "$1" in filter|nat|mangle|raw|security) ;; *) die "$E_USAGE" "unknown table $1" ;; esac
  case "$2" in exact) x=-x ;; human) x= ;; *) die "$E_USAGE" "show TABLE exact|human" ;; esac
  has iptables || die "$E_TOOL" "iptables not found on this host"
  # -n: no DNS lookups, which a host whose firewall blocks DNS would hang on.
  echo "--- v4"
  iptables -t "$1" -v -n $x -L --line-numbers 2>&1 || true
  echo "--- v6"
  if has ip6tables; then ip6tables -t "$1" -v -n $x -L --line-numbers 2>&1 || true; fi
  echo "--- end"
}

# Recent netfilter LOG lines (they carry IN= OUT= SRC= ...), from the journal
# where journald runs, else from the kernel ring buffer.
cmd_kernel_log() { # SECONDS
  [ $# -eq 1 ] || die "$E_USAGE" "kernel-log SECONDS"
  case "$1" in ''|*[!0-9]*) die "$E_USAGE" "kernel-log SECONDS" ;; esac
  echo "now=$(date +%s)"
  echo "uptime=$(cut -d' ' -f1 /proc/uptime 2>/dev/null || echo 0)"
  if has journalctl && [ -d /run/systemd/journal ]; then
    echo "source=journalctl"
    echo "--- log"
    journalctl -k -q --no-pager -o short-unix --since "-$1s" 2>/dev/null | grep ' IN=.* SRC=' | tail -n 5000 || true
  elif has dmesg; then
    echo "source=dmesg"
    echo "--- log"
    { dmesg --time-format iso 2>/dev/null || dmesg 2>/dev/null || echo "unavailable: dmesg failed"; } | grep -e ' IN=.* SRC=' -e '^unavailable' | tail -n 5000 || true
  else
    echo "source=none"
    echo "--- log"
    echo "unavailable: neither journalctl nor dmesg"
  fi
  echo "--- end"
}

cmd_ensure_persistent() {
  if has netfilter-persistent || [ -d /usr/share/netfilter-persistent ]; then echo "present"; return; fi
  has apt-get || die "$E_TOOL" "iptables-persistent is missing and this host has no apt-get"
  printf 'iptables-persistent iptables-persistent/autosave_v4 boolean false\niptables-persistent iptables-persistent/autosave_v6 boolean false\n' \
    | debconf-set-selections 2>/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold iptables-persistent >&2 \
    || die "$E_TOOL" "apt-get install iptables-persistent failed"
  echo "installed"
}

verb=${1:-}
[ $# -gt 0 ] && shift
umask 077
case "$verb" in
  facts) cmd_facts "$@" ;;
  prepare) cmd_prepare "$@" ;;
  confirm) cmd_confirm "$@" ;;
  abort) cmd_abort "$@" ;;
  history) cmd_history ;;
  generation) cmd_generation "$@" ;;
  ensure-persistent) cmd_ensure_persistent ;;
  listeners) cmd_listeners ;;
  show) cmd_show "$@" ;;
  kernel-log) cmd_kernel_log "$@" ;;
  *) die "$E_USAGE" "unknown verb '$verb'" ;;
esac
