#!/bin/sh
# fleetfw host side. Run by fleetfw over SSH as
#   [sudo -n] sh -c '<this file>' fleetfw-host VERB ARGS...
# ARGS are checked by fleetfw against ^[A-Za-z0-9._:/=@+-]+$; rule sets arrive
# on stdin. Nothing is installed: state lives in $FLEETFW_STATE (0700).
# `serve` runs several verbs in one process (see cmd_serve): an apply then
# starts one login shell per connection, as a single ssh command would.
#
# Transaction (one at a time per host, the txn/ directory is the lock):
#   prepare  test, back up, arm the revert, load     -> txn/pending.TXID exists
#   confirm  (over a NEW connection) rename pending.TXID -> confirmed.TXID, persist
#   revert   (timer or failure) rename pending.TXID -> reverting.TXID, restore backup
# The rename is the single atomic step that decides between confirm and revert.
# The markers carry the transaction id so that a late watchdog of an earlier
# transaction can never touch a later one.
#
# A plan runs `facts` on every host and an apply adds `prepare` and `confirm`:
# every process they start is started fleet-wide, so they take each dump once,
# reuse it, and read and write small files with the shell's own builtins.
# A && B || die is the intended idiom here: die when either step fails.
# shellcheck disable=SC2015
set -eu

S=${FLEETFW_STATE:-/var/lib/fleetfw}
T=$S/txn
PERSIST_DIR=${FLEETFW_PERSIST_DIR:-/etc/iptables}
SPLIT='# fleetfw-split v6'
SETS_SPLIT='# fleetfw-split ipsets'
# Scratch files of reads (facts, serve): outside $S, so a host whose state
# disk is full can still be read, and prepare says why it cannot go on.
SCRATCH=

# Exit codes, mirrored in src/host/run.ts (HostExit).
E_USAGE=64 E_TEST=65 E_LOAD=66 E_LOCKED=75 E_STALE=76 E_NOTXN=70 E_CHANGED=71 E_LATE=72 E_ARM=73 E_TOOL=74 E_SPACE=77

die() { code=$1; shift; echo "fleetfw-host: $*" >&2; exit "$code"; }
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
# First line of a file ($2 when it is missing), read by the shell itself.
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

save4() { iptables-save 2>/dev/null || true; }
save6() { ip6tables-save 2>/dev/null || true; }
# What "the same rules" means for hashes: canon(V4, V6, SETS, OUT) writes both
# dumps without comments and counters, then fleetfw's own ipsets (fleetfw-*) from
# an `ipset save` file: create lines cut to name, type and family, every line
# sorted bytewise (a set lists its members in hash order). A missing file reads
# as empty; a host without fleetfw's sets hashes as it always did. A few hundred
# lines are sorted in awk (run with LC_ALL=C), saving a `sort` process per dump;
# more go through `sort`, which is faster there.
CANON_AWK='function rules(f, out,  l) { while ((getline l <f) > 0) if (l !~ /^#/) { sub(/\[[0-9]*:[0-9]*\]$/, "[0:0]", l); print l >out }; close(f) }
  function sift(a, i, n,  c, t) { while ((c = 2 * i) <= n) { if (c < n && a[c + 1] "" > a[c] "") c++; if (a[i] "" >= a[c] "") return; t = a[i]; a[i] = a[c]; a[c] = t; i = c } }
  function set_line(l, a, n,  w) {
    split(l, w, " ")
    if ((w[1] != "create" && w[1] != "add") || w[2] !~ /^fleetfw-/) return n
    a[++n] = w[1] == "create" ? w[1] " " w[2] " " w[3] " " w[4] " " w[5] : l
    return n }
  function fleet_sets(f, a,  l, n, i, t, cmd) {
    split("", a); n = 0
    while ((getline l <f) > 0) n = set_line(l, a, n)
    close(f)
    if (n > 500) {
      # Cutting create lines never reorders them: sorting the raw dump is the same.
      cmd = "LC_ALL=C sort \047" f "\047"; split("", a); n = 0
      while ((cmd | getline l) > 0) n = set_line(l, a, n)
      close(cmd)
      return n
    }
    for (i = int(n / 2); i >= 1; i--) sift(a, i, n)
    for (i = n; i > 1; i--) { t = a[1]; a[1] = a[i]; a[i] = t; sift(a, 1, i - 1) }
    return n }
  function canon_sorted(v4, v6, a, n, out,  i) {
    rules(v4, out); print "---" >out; rules(v6, out)
    if (n > 0) print "---" >out; for (i = 1; i <= n; i++) print a[i] >out; close(out) }
  function canon(v4, v6, sets, out,  a) { canon_sorted(v4, v6, a, fleet_sets(sets, a), out) }'
hash_dumps() { # V4 V6 IPSET-SAVE
  hd=$(LC_ALL=C awk "$CANON_AWK"' BEGIN { canon(ARGV[1], ARGV[2], ARGV[3], "/dev/stdout"); exit }' "$1" "$2" "$3" | sha256sum)
  printf '%s\n' "${hd%% *}"
}
# The live rules into PREFIX.4, PREFIX.6 and the raw `ipset save` into
# PREFIX.raw (empty without ipset): read once, reused.
dump_live() { # PREFIX
  save4 >"$1.4" && save6 >"$1.6" || return 1
  if has ipset; then ipset save >"$1.raw" 2>/dev/null || : >"$1.raw"; else : >"$1.raw"; fi
}

# /proc files report size 0: whether legacy tables exist takes a read.
legacy_tables() { [ -r /proc/net/ip_tables_names ] && IFS= read -r _t </proc/net/ip_tables_names; }

backend() { # the output of `iptables -V`
  case "$1" in
    *nf_tables*) b=nft ;;
    *legacy*) b=legacy ;;
    '') echo none; return ;;
    *) b=legacy ;;
  esac
  # Rules in the other backend too means two firewalls: refuse to guess. Legacy
  # tables are listed in /proc/net/ip_tables_names: nothing there, nothing to read.
  if [ "$b" = nft ] && legacy_tables && has iptables-legacy-save \
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
  wd=$(val "$T/watchdog")
  case "$wd" in
    pid:*) kill -0 "${wd#pid:}" 2>/dev/null ;;
    unit:*) systemctl is-active --quiet "${wd#unit:}.timer" 2>/dev/null ;;
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
  [ -d "$S/txns" ] || mkdir -p "$S/txns"
  id=$(val "$T/id" unknown)
  [ ! -e "$S/txns/$id" ] || rm -rf "$S/txns/$id"
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
      [ -d "$PERSIST_DIR" ] || mkdir -m 0755 "$PERSIST_DIR"
      dump_live "$PERSIST_DIR/.fleetfw-tmp"
      persist_dumps
      record "$(val "$T/id") confirmed-persist-recovered"
      retire_txn
      echo "recovered: finished persisting a confirmed transaction" ;;
    reverting)
      # The revert died half-way: finish it.
      iptables-restore <"$T/backup.v4" || true
      ip6tables-restore <"$T/backup.v6" || true
      sh "$T/revert.sh" - sets || true
      record "$(val "$T/id") reverted-recovered"
      retire_txn
      echo "recovered: finished an interrupted revert" ;;
    *)
      record "$(val "$T/id") abandoned-$st"
      retire_txn
      echo "recovered: removed a transaction abandoned while $st (rules untouched)" ;;
  esac
}

# Persist what dump_live "$PERSIST_DIR/.fleetfw-tmp" took as rules.v4, rules.v6
# and ipsets, atomically: the temp files (same directory) fsynced, then renamed.
persist_dumps() {
  p=$PERSIST_DIR/.fleetfw-tmp
  set -- "$p.4" "$p.6"
  # The ipsets the rules match: ipset-persistent loads them at boot, before the rules.
  sets=no
  if [ -s "$p.raw" ] || [ -f "$PERSIST_DIR/ipsets" ]; then sets=yes; set -- "$@" "$p.raw"; fi
  chmod 0640 "$@"
  sync "$@" 2>/dev/null || sync
  mv -f "$p.4" "$PERSIST_DIR/rules.v4"
  fault_point persist
  mv -f "$p.6" "$PERSIST_DIR/rules.v6"
  if [ "$sets" = yes ]; then mv -f "$p.raw" "$PERSIST_DIR/ipsets"; else rm -f "$p.raw"; fi
  sync "$PERSIST_DIR" 2>/dev/null || sync
}

# Read "v4 text, split line, v6 text[, split line, ipsets]" from stdin into
# rules.v4, rules.v6 and ipsets of DIR, and the tables the rules name into tables.
split_stdin() { # DIR
  awk -v d="$1" -v split_line="$SPLIT" -v sets_line="$SETS_SPLIT" '
    BEGIN { out = d "/rules.v4"; printf "" > (d "/rules.v6"); printf "" > (d "/ipsets"); printf "" > (d "/tables") }
    $0 == split_line { out = d "/rules.v6"; next }
    $0 == sets_line { out = d "/ipsets"; next }
    /^\*/ && out != d "/ipsets" { print (out == d "/rules.v4" ? "4 " : "6 ") substr($0, 2) > (d "/tables") }
    { print > out }' || die "$E_SPACE" "cannot write $1: disk full?"
}

# A backup that really restores: every table the candidate replaces must be in
# it, so a table that did not exist before is reset to empty (policies ACCEPT).
# From the live dumps (now.4, now.6, now.raw) and the candidate (tables, ipsets)
# in DIR, in one pass: backup.v4, backup.v6; for the sets, the candidate's that
# do not exist yet (sets.new, sets.created) and two loads for `ipset restore
# -exist`, the candidate's (sets.load) and the live fleetfw sets' (backup.load):
# each set made sure to exist, filled as a temporary one, then swapped in.
make_backups() { # DIR
  awk -v d="$1" '
    function chains(t) {
      if (t == "filter" || t == "security") return "INPUT FORWARD OUTPUT"
      if (t == "nat") return "PREROUTING INPUT OUTPUT POSTROUTING"
      if (t == "mangle") return "PREROUTING INPUT FORWARD OUTPUT POSTROUTING"
      if (t == "raw") return "PREROUTING OUTPUT"
      return ""
    }
    function end_set() { if (name != "") { print "swap fleetfw--swap " name > into; print "destroy fleetfw--swap" > into; name = "" } }
    function swap_in(out) { # this create or add line, into the load OUT
      if ($1 == "create") { end_set(); name = $2; into = out; print > out; $2 = "fleetfw--swap"; print > out }
      else if ($1 == "add") { $2 = "fleetfw--swap"; print > out } }
    BEGIN { load = d "/sets.load"; printf "" > (d "/backup.load"); printf "" > (d "/sets.new"); printf "" > (d "/sets.created"); printf "" > load }
    FILENAME == d "/tables" { order[++n] = $1 " " $2; next }
    FILENAME == d "/now.raw" {
      if ($1 == "create") { have[$2] = 1; if ($2 == "fleetfw--swap") print "destroy fleetfw--swap" > load }
      if (($1 == "create" || $1 == "add") && $2 ~ /^fleetfw-/ && $2 != "fleetfw--swap") swap_in(d "/backup.load")
      next }
    FILENAME == d "/ipsets" {
      if ($1 == "create" && !($2 in have)) { print > (d "/sets.new"); print $2 > (d "/sets.created") }
      swap_in(load)
      next }
    { fam = FILENAME == d "/now.4" ? 4 : 6; print > (d "/backup.v" fam); if (/^\*/) tab[fam, substr($0, 2)] = 1 }
    END {
      end_set()
      printf "" >> (d "/backup.v4"); printf "" >> (d "/backup.v6")
      for (i = 1; i <= n; i++) {
        split(order[i], f, " ")
        if ((f[1], f[2]) in tab) continue
        c = chains(f[2]); if (c == "") { print "unknown table " f[2] > "/dev/stderr"; exit 2 }
        out = d "/backup.v" f[1]
        print "*" f[2] > out; k = split(c, cs, " "); for (j = 1; j <= k; j++) print ":" cs[j] " ACCEPT [0:0]" > out; print "COMMIT" > out
        tab[f[1], f[2]] = 1
      }
    }' "$1/tables" "$1/now.raw" "$1/ipsets" "$1/now.4" "$1/now.6"
}

# The revert (rules and sets); run by the watchdog, the timer, an abort
# or a failed load. Written into the transaction so it outlives this script.
write_revert_script() {
  cat >"$T/revert.sh" <<'REVERT'
#!/bin/sh
# fleetfw revert: restore the backup unless the transaction was confirmed first.
#   revert.sh TXID watchdog SECONDS | revert.sh TXID timer | revert.sh TXID now REASON
#   revert.sh - sets: put the live fleetfw sets of before back (backup.load).
S=${FLEETFW_STATE:-/var/lib/fleetfw}
T=$S/txn
id=$1
mode=$2
reason=${3:-}
load_sets() {
  [ -s "$T/backup.load" ] || return 0
  ipset destroy fleetfw--swap 2>/dev/null || true
  ipset restore -exist <"$T/backup.load"
}
if [ "$mode" = sets ]; then load_sets; exit; fi
if [ "$mode" = watchdog ]; then
  # HUP, INT and TERM are already ignored: inherited from prepare.
  trap '' HUP INT TERM
  sleep "$3"
  reason="no confirmation within ${3}s"
fi
[ "$mode" = timer ] && reason="no confirmation within the window"
# The one atomic step: whoever renames this transaction's marker first decides.
mv "$T/pending.$id" "$T/reverting.$id" 2>/dev/null || exit 0
rc=0
load_sets || rc=1
iptables-restore <"$T/backup.v4" || rc=1
ip6tables-restore <"$T/backup.v6" || rc=1
# Sets this transaction created: nothing matches them any more.
[ ! -s "$T/sets.created" ] || while read -r set; do ipset destroy "$set" 2>/dev/null || true; done <"$T/sets.created"
if [ "$rc" = 0 ]; then result=reverted; else result=revert-failed; fi
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $id $result $reason" >>"$S/history.log"
echo "$result: $reason" >"$T/outcome"
mkdir -p "$S/txns"
rm -rf "$S/txns/$id"
mv "$T" "$S/txns/$id"
exit "$rc"
REVERT
}

arm_watchdog() { # window txid
  if [ -d /run/systemd/system ] && has systemd-run; then
    unit="fleetfw-revert-$2"
    systemd-run --quiet --unit "$unit" --on-active="$1s" --timer-property=AccuracySec=100ms \
      --setenv=FLEETFW_STATE="$S" /bin/sh "$T/revert.sh" "$2" timer >/dev/null 2>&1 \
      || die "$E_ARM" "systemd-run could not arm the revert timer"
    echo "unit:$unit" >"$T/watchdog"
  else
    has setsid || die "$E_ARM" "setsid not found: cannot arm the revert watchdog"
    # Ignored before the fork, so the watchdog is immune from its first
    # instant (ignored signals stay ignored across exec): armed once it exists.
    # In its own session, it outlives this SSH session; its pid is its group.
    trap '' HUP INT TERM
    FLEETFW_STATE="$S" setsid /bin/sh "$T/revert.sh" "$2" watchdog "$1" </dev/null >/dev/null 2>&1 &
    echo "pid:$!" >"$T/watchdog"
    trap - HUP INT TERM
    kill -0 "$!" 2>/dev/null || die "$E_ARM" "the revert watchdog did not start"
  fi
}

cmd_facts() {
  [ -d "$S" ] || { mkdir -p "$S" && chmod 0700 "$S"; }
  # Every dump taken once, into files; one awk makes both hashes' texts and the
  # printed sections, one sha256sum hashes both (a plan runs this on every host).
  own_scratch=no
  [ -n "$SCRATCH" ] || { SCRATCH=$(mktemp -d) && own_scratch=yes; }
  f=$SCRATCH/facts
  dump_live "$f"
  LC_ALL=C awk "$CANON_AWK"' BEGIN {
      f = ARGV[1]
      n = fleet_sets(f ".raw", a); canon_sorted(f ".4", f ".6", a, n, f ".hl"); canon(ARGV[2] "/rules.v4", ARGV[2] "/rules.v6", ARGV[2] "/ipsets", f ".hp")
      out = f ".out"
      print "--- v4" >out; while ((getline l <(f ".4")) > 0) print l >out
      print "--- v6" >out; while ((getline l <(f ".6")) > 0) print l >out
      if (ARGV[3] == "yes") { print "--- ipsets" >out; for (i = 1; i <= n; i++) print a[i] >out }
      exit }' "$f" "$PERSIST_DIR" "$(has ipset && echo yes || echo no)"
  # shellcheck disable=SC2046 # two "HASH  FILE" lines
  set -- $(sha256sum "$f.hl" "$f.hp")
  live=$1 persisted=$3
  # `# Generated by iptables-save v1.8.9 (nf_tables) on ...`: the version
  # without another process; `iptables -V` when no table is loaded.
  first=
  IFS= read -r first <"$f.4" || true
  case "$first" in
    '# Generated by '*' v'*' ('*')'*) ipt_v=${first#*-save v}; ipt_v="iptables v${ipt_v%% on *}" ;;
    *) ipt_v=$(iptables -V 2>/dev/null || true) ;;
  esac
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
  echo "live_hash=$live"
  echo "persisted_hash=$persisted"
  echo "boot_id=$(boot_id)"
  cat "$f.out"
  if [ "$own_scratch" = yes ]; then rm -rf "$SCRATCH"; else rm -f "$f.4" "$f.6" "$f.raw" "$f.hl" "$f.hp" "$f.out"; fi
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
    split_stdin "$d"
    # shellcheck disable=SC2016 # expanded by the inner shell
    # Sets are per network namespace: the candidate's must exist there for its rules to load.
    if unshare -n sh -c '{ [ ! -s "$3" ] || ipset restore <"$3"; } && iptables-restore <"$1" && ip6tables-restore <"$2" && iptables-save && echo "--- canonical-v6" && ip6tables-save' \
      sh "$d/rules.v4" "$d/rules.v6" "$d/ipsets" >"$d/out" 2>"$d/err"; then
      cat "$d/out"
    else
      echo "unavailable: $(head -c 300 "$d/err" | tr '\n' ' ')"
    fi
    rm -rf "$d"
  fi
  echo "--- end"
}

# The candidate matches ipsets: the tools must be there, on the host and at boot.
check_set_tools() {
  has ipset || die "$E_TOOL" "the rules match ipsets but ipset is not installed on this host (apt-get install ipset ipset-persistent)"
  [ -e /usr/share/netfilter-persistent/plugins.d/10-ipset ] \
    || die "$E_TOOL" "the rules match ipsets but ipset-persistent is not installed: the host would boot its rules without their sets (apt-get install ipset-persistent)"
}

# A prepare that fails before the load leaves no set of its own behind.
drop_new_sets() {
  [ -s "$T/sets.created" ] || return 0
  while read -r set; do ipset destroy "$set" 2>/dev/null || true; done <"$T/sets.created"
}

cmd_prepare() { # TXID WINDOW EXPECTED_HASH USER PLAN_HASH
  [ $# -eq 5 ] || die "$E_USAGE" "prepare TXID WINDOW EXPECTED_HASH USER PLAN_HASH"
  txid=$1 window=$2 expected=$3
  has iptables-restore && has ip6tables-restore || die "$E_TOOL" "iptables-restore/ip6tables-restore not found on this host"
  [ -d "$S" ] || { mkdir -p "$S" && chmod 0700 "$S"; }
  # Room for the candidate, backups and markers, checked before any step: running
  # out after the load would leave loaded rules without their records.
  free=$(stat -f -c '%a %S' "$S" 2>/dev/null || true)
  case "$free" in
    *' '*) free_kb=$(( ${free% *} * ${free#* } / 1024 ))
      [ "$free_kb" -ge 1024 ] || die "$E_SPACE" "only ${free_kb} KB free in $S (fleetfw needs 1024 KB): disk full?" ;;
  esac
  if ! mkdir "$T" 2>/dev/null; then
    if recover_stale >&2; then mkdir "$T" 2>/dev/null || die "$E_LOCKED" "another transaction started meanwhile"
    else
      die "$E_LOCKED" "locked by transaction $(val "$T/id") of $(val "$T/user") since $(val "$T/started")"
    fi
  fi
  # From here on, any failure before the load must release the lock.
  trap 'drop_new_sets; rm -rf "$T"' EXIT
  fault_point lock
  stamp=$(date -u '+%Y-%m-%dT%H:%M:%SZ %s')
  started=${stamp% *}
  { echo "$txid" >"$T/id" && echo "$4" >"$T/user" && echo "$5" >"$T/plan_hash" && echo "$started" >"$T/started" \
    && echo "${stamp#* }" >"$T/started_epoch" && boot_id >"$T/boot_id"; } 2>/dev/null || die "$E_SPACE" "cannot write $T: disk full?"
  split_stdin "$T"
  fault_point upload
  # One read of the live rules: the stale check, the backups, the sets' backup.
  dump_live "$T/now" || die "$E_SPACE" "cannot write the backup: disk full?"
  if [ "$expected" != "-" ]; then
    actual=$(hash_dumps "$T/now.4" "$T/now.6" "$T/now.raw")
    [ "$actual" = "$expected" ] || die "$E_STALE" "live rules changed since they were read (expected $expected, found $actual)"
  fi
  [ ! -s "$T/ipsets" ] || check_set_tools
  make_backups "$T" || die "$E_SPACE" "cannot write the backup: disk full?"
  # Missing sets are created empty, so that `iptables-restore -t` finds them (no
  # rule uses them yet); their members are loaded once the revert is armed.
  [ ! -s "$T/sets.new" ] || ipset restore <"$T/sets.new" 2>"$T/test.err" || die "$E_TEST" "cannot create the ipsets: $(head -c 500 "$T/test.err")"
  iptables-restore -t <"$T/rules.v4" 2>"$T/test.err" || die "$E_TEST" "iptables-restore -t refused the IPv4 rules: $(head -c 500 "$T/test.err")"
  ip6tables-restore -t <"$T/rules.v6" 2>"$T/test.err" || die "$E_TEST" "ip6tables-restore -t refused the IPv6 rules: $(head -c 500 "$T/test.err")"
  write_revert_script || die "$E_SPACE" "cannot write the revert script: disk full?"
  : >"$T/pending.$txid" || die "$E_SPACE" "cannot write $T/pending.$txid: disk full?"
  fault_point backup
  arm_watchdog "$window" "$txid"
  fault_point arm
  trap - EXIT
  # Armed: from now on the revert script owns the rollback.
  # Sets first: the new rules must find their members when they start matching.
  if ! { [ ! -s "$T/sets.load" ] || ipset restore -exist <"$T/sets.load" 2>"$T/load.err"; } || ! iptables-restore <"$T/rules.v4" 2>>"$T/load.err" \
    || ! ip6tables-restore <"$T/rules.v6" 2>>"$T/load.err"; then
    err=$(head -c 500 "$T/load.err")
    sh "$T/revert.sh" "$txid" now "the load failed: $err" || true
    die "$E_LOAD" "loading the rules failed, previous rules restored: $err"
  fi
  dump_live "$T/loaded" && hash_dumps "$T/loaded.4" "$T/loaded.6" "$T/loaded.raw" >"$T/loaded_hash"
  echo "$started $txid prepared user=$4 plan=$5 window=$window" >>"$S/history.log"
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
  # One read of the live rules, into the persist dir's temp files: checked
  # against what was loaded, then persisted as they are.
  [ -d "$PERSIST_DIR" ] || mkdir -m 0755 "$PERSIST_DIR"
  p=$PERSIST_DIR/.fleetfw-tmp
  dump_live "$p" || die "$E_SPACE" "cannot write $PERSIST_DIR: disk full?"
  if [ "$(hash_dumps "$p.4" "$p.6" "$p.raw")" != "$(val "$T/loaded_hash")" ]; then
    rm -f "$p.4" "$p.6" "$p.raw"
    sh "$T/revert.sh" "$txid" now "rules changed inside the window" || true
    die "$E_CHANGED" "the live rules changed inside the window; reverted"
  fi
  fault_point confirm
  mv "$T/pending.$txid" "$T/confirmed.$txid" 2>/dev/null || die "$E_LATE" "too late: the revert won the race"
  # Confirmed: finish even if the session dies now.
  trap '' HUP INT TERM PIPE
  wd=$(val "$T/watchdog")
  case "$wd" in
    # The watchdog leads its own process group: its sleep goes with it.
    pid:*) kill -KILL -- "-${wd#pid:}" 2>/dev/null || kill -KILL "${wd#pid:}" 2>/dev/null || true ;;
    unit:*) systemctl stop "${wd#unit:}.timer" >/dev/null 2>&1 || true ;;
  esac
  # fleetfw sets the confirmed rules no longer match (a set in use refuses to go);
  # the persisted sets are then those that remain.
  gone=
  if [ -s "$p.raw" ]; then
    # shellcheck disable=SC2013 # set names are single words
    for set in $(awk -v c="$T/ipsets" 'BEGIN { while ((getline l <c) > 0) { split(l, f, " "); if (f[1] == "create") keep[f[2]] = 1 } }
        $1 == "create" && $2 ~ /^fleetfw-/ && !($2 in keep) { print $2 }' "$p.raw"); do
      if ipset destroy "$set" 2>/dev/null; then gone="$gone $set"; fi
    done
    [ -z "$gone" ] || ipset save >"$p.raw" 2>/dev/null || true
  fi
  persist_dumps
  gen=$(( $(val "$S/current" 0) + 1 ))
  g=$S/generations/$(printf '%06d' "$gen")
  mkdir -p "$g"
  if [ -s "$T/ipsets" ]; then cp "$T/rules.v4" "$T/rules.v6" "$T/ipsets" "$g/"; else cp "$T/rules.v4" "$T/rules.v6" "$g/"; fi
  when=$(now)
  {
    echo "generation=$gen"; echo "txid=$txid"; echo "user=$(val "$T/user")"; echo "when=$when"
    echo "plan_hash=$(val "$T/plan_hash")"; echo "source=$source"; echo "hash=$(val "$T/loaded_hash")"
  } >"$g/meta"
  echo "$gen" >"$S/current.tmp" && mv "$S/current.tmp" "$S/current"
  prune "$S/generations" "$keep"
  echo "$when $txid confirmed generation=$gen" >>"$S/history.log"
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

# Listening TCP and UDP sockets as `ss -ltnu[p]` prints them (seed 003's
# discovery step). Process names (-p) only for `discover`: ss finds them by
# reading every process's file descriptors, which costs a plan 14 ms per host
# on a host running a few hundred processes (ss -ltnu alone: 2 ms).
listeners() { # [-p]
  if has ss; then ss "-ltnu${1:+p}" 2>/dev/null || true; else echo "unavailable: ss not found"; fi
}

cmd_listeners() { echo "--- listeners"; listeners -p; echo "--- end"; }

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

dispatch() {
  verb=${1:-}
  [ $# -gt 0 ] && shift
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
    ping) echo pong ;;
    *) die "$E_USAGE" "unknown verb '$verb'" ;;
  esac
}

# Several verbs in one process, one request at a time (fleetfw sends the next
# only after the answer). A request is a line `NONCE LENGTH VERB ARGS...` and
# LENGTH bytes of stdin for the verb. The answer is the verb's stdout, then
# `\n--- fleetfw-stderr NONCE\n`, its stderr, and `\n--- fleetfw-rc RC NONCE\n`.
# The nonce (random, per request) keeps the verb's output from ending a section.
cmd_serve() {
  SCRATCH=$(mktemp -d)
  io=$SCRATCH/io
  trap 'rm -rf "$SCRATCH"' EXIT
  trap 'exit 129' HUP PIPE TERM
  while IFS= read -r req; do
    set -f
    # shellcheck disable=SC2086 # words checked by fleetfw; globbing is off
    set -- $req
    set +f
    [ $# -ge 3 ] || die "$E_USAGE" "serve: bad request"
    nonce=$1 len=$2
    shift 2
    case "$len" in *[!0-9]*) die "$E_USAGE" "serve: bad length" ;; esac
    # Exactly LENGTH bytes (GNU head reads no further): the next request stays unread.
    if [ "$len" -gt 0 ]; then head -c "$len" >"$io.in"; else : >"$io.in"; fi
    set +e
    (set -e; dispatch "$@") <"$io.in" 2>"$io.err"
    rc=$?
    set -e
    printf '\n--- fleetfw-stderr %s\n' "$nonce"
    [ ! -s "$io.err" ] || cat "$io.err"
    printf '\n--- fleetfw-rc %s %s\n' "$rc" "$nonce"
  done
}

umask 077
if [ "${1:-}" = serve ]; then cmd_serve; else dispatch "$@"; fi
