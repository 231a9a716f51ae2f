#!/bin/sh
# fleetfw host side. Run by fleetfw over SSH as
#   [sudo -n] sh -c '<this file>' fleetfw-host VERB ARGS...
# ARGS are checked by fleetfw against ^[A-Za-z0-9._:/=@+-]+$; rule sets arrive
# on stdin. Nothing is installed: state lives in $FLEETFW_STATE (0700).
# `serve` runs several verbs in one process (see cmd_serve): an apply then
# starts one login shell per host, as a single ssh command would.
#
# Transaction (one at a time per host, the txn/ directory is the lock):
#   prepare  test, back up, arm the revert, load     -> txn/pending.TXID exists
#   confirm  (over a NEW connection) rename pending.TXID -> confirmed.TXID, persist
#            Run in the kept script instead, it first reads a token back through
#            the new connection (new_connection_answers): the same proof, without
#            a second login shell.
#   revert   (timer or failure) rename pending.TXID -> reverting.TXID, restore backup
# The rename is the single atomic step that decides between confirm and revert.
# The markers carry the transaction id so that a late watchdog of an earlier
# transaction can never touch a later one.
#
# A plan runs `facts` on every host and an apply adds `prepare` and `confirm`:
# every process they start is started fleet-wide, so they take each dump once,
# reuse it, and read and write small files with the shell's own builtins.
# A && B || die is the intended idiom here: die when either step fails (SC2015);
# getv assigns its variable through eval (SC2154); awk programs and the revert
# script are single-quoted on purpose (SC2016).
# shellcheck disable=SC2015,SC2154,SC2016
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
E_USAGE=64 E_TEST=65 E_LOAD=66 E_LOCKED=75 E_STALE=76 E_NOTXN=70 E_CHANGED=71 E_LATE=72 E_ARM=73 E_TOOL=74 E_SPACE=77 E_LOOPBACK=78

die() { code=$1; shift; echo "fleetfw-host: $*" >&2; exit "$code"; }
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
# The first line of FILE into the variable NAME (DEFAULT when FILE is missing),
# read by the shell itself: no process, and no subshell as $(...) would take.
getv() { _v=${3:-}; [ ! -r "$2" ] || IFS= read -r _v <"$2" || true; eval "$1=\$_v"; }
val() { getv _val "$@"; printf '%s\n' "$_val"; }
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

# The time of day inside awk, as `date -u +%Y-%m-%dT%H:%M:%SZ` prints it: a
# date process fewer per step. srand() seeds from the time of day and returns
# the previous seed, so a second call returns the seconds since the epoch.
TIME_AWK='function now_epoch() { srand(); return srand() }
  function iso(t,  d, s, z, era, doe, yoe, doy, mp, m) { # civil from days (H. Hinnant)
    d = int(t / 86400); s = t - d * 86400; z = d + 719468; era = int(z / 146097); doe = z - era * 146097
    yoe = int((doe - int(doe / 1460) + int(doe / 36524) - int(doe / 146096)) / 365)
    doy = doe - (365 * yoe + int(yoe / 4) - int(yoe / 100)); mp = int((5 * doy + 2) / 153); m = mp < 10 ? mp + 3 : mp - 9
    return sprintf("%04d-%02d-%02dT%02d:%02d:%02dZ", yoe + era * 400 + (m <= 2), m, doy - int((153 * mp + 2) / 5) + 1, int(s / 3600), int(s % 3600 / 60), s % 60) }
'
save4() { iptables-save 2>/dev/null || true; }
save6() { ip6tables-save 2>/dev/null || true; }
# What "the same rules" means for hashes: canon(V4, V6, SETS, OUT) writes both
# dumps without comments, counters and empty tables (every chain a built-in
# one with policy ACCEPT, no rule: the same as no table, which a revert or an
# emptied table leaves and a boot does not), then fleetfw's own ipsets (fleetfw-*) from
# an `ipset save` file: create lines cut to name, type and family, every line
# sorted bytewise (a set lists its members in hash order). A missing file reads
# as empty; a host without fleetfw's sets hashes as it always did. A few hundred
# lines are sorted in awk (run with LC_ALL=C), saving a `sort` process per dump;
# more go through `sort`, which is faster there.
CANON_AWK='function rules(f, out,  l, held) { # a table is held back while it is still empty
    held = ""
    while ((getline l <f) > 0) {
      if (l ~ /^#/) continue
      sub(/\[[0-9]*:[0-9]*\]$/, "[0:0]", l)
      if (l ~ /^\*/) { held = l; continue }
      if (held != "") {
        if (l == "COMMIT") { held = ""; continue }
        if (l ~ /^:[^ ]+ ACCEPT \[0:0\]$/) { held = held "\n" l; continue }
        print held >out; held = ""
      }
      print l >out
    }
    if (held != "") print held >out
    close(f) }
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
  function canon(v4, v6, sets, out,  a) { canon_sorted(v4, v6, a, fleet_sets(sets, a), out) }
  function same_text(f1, f2,  x, y, a, b) { # the same lines; a missing file is never the same
    while (1) {
      a = (getline x < f1); b = (getline y < f2)
      if (a <= 0 || b <= 0) { close(f1); close(f2); return a == 0 && b == 0 }
      if (x != y) { close(f1); close(f2); return 0 }
    } }'
# The live rules into V4 and V6 and the raw `ipset save` into SETS (empty
# without ipset): read once, reused.
dump_live() { # V4 V6 SETS
  save4 >"$1" && save6 >"$2" || return 1
  if has ipset; then ipset save >"$3" 2>/dev/null || : >"$3"; else : >"$3"; fi
}

# /proc files report size 0: whether legacy tables exist takes a read.
legacy_tables() { [ -r /proc/net/ip_tables_names ] && IFS= read -r _t </proc/net/ip_tables_names; }

backend() { # the output of `iptables -V`; sets b
  case "$1" in
    *nf_tables*) b=nft ;;
    *legacy*) b=legacy ;;
    '') b=none; return ;;
    *) b=legacy ;;
  esac
  # Rules in the other backend too means two firewalls: refuse to guess. Legacy
  # tables are listed in /proc/net/ip_tables_names: nothing there, nothing to read.
  if [ "$b" = nft ] && legacy_tables && has iptables-legacy-save \
    && iptables-legacy-save 2>/dev/null | grep -q '^-A'; then b=mixed; fi
  if [ "$b" = legacy ] && has iptables-nft-save && iptables-nft-save 2>/dev/null | grep -q '^-A'; then b=mixed; fi
}

# Is the transaction's revert still armed (watchdog process or systemd timer)?
watchdog_alive() {
  [ -f "$T/watchdog" ] || return 1
  # After a reboot the recorded pid (or transient unit) is gone; the same pid
  # may belong to another process now, so it proves nothing.
  getv txn_boot "$T/boot_id"
  [ "$txn_boot" = "$BOOT_ID" ] || return 1
  getv wd "$T/watchdog"
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

# The directory of generation N into g: zero-padded to 6 digits, so that a glob
# lists generations in order.
gen_dir() { # N
  g=00000$1
  if [ "${#1}" -ge 6 ]; then g=$1; else g=${g#"${g%??????}"}; fi
  g=$S/generations/$g
}

# Close out a transaction directory: keep the last few for inspection.
retire_txn() {
  [ -d "$S/txns" ] || mkdir -p "$S/txns"
  getv id "$T/id" unknown
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
  getv txn_boot "$T/boot_id"
  [ "$txn_boot" = "$BOOT_ID" ] && same_boot=yes
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
      dump_for_persist
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

# The live rules as iptables-persistent reads them, 0640, into $PTMP: a
# directory of the persist dir (a rename does not cross file systems).
PTMP=$PERSIST_DIR/.fleetfw-tmp
dump_for_persist() {
  [ -d "$PERSIST_DIR" ] || mkdir -m 0755 "$PERSIST_DIR" || return 1
  [ -d "$PTMP" ] || mkdir -m 0750 "$PTMP" || return 1
  umask 027
  dump_live "$PTMP/rules.v4" "$PTMP/rules.v6" "$PTMP/ipsets" || { umask 077; return 1; }
  umask 077
}
# Persist what dump_for_persist took, atomically: the files fsynced, then each
# renamed over its name (one mv for all), then the directory fsynced.
persist_dumps() {
  set -- "$PTMP/rules.v4" "$PTMP/rules.v6"
  # The ipsets the rules match: ipset-persistent loads them at boot, before the rules.
  if [ -s "$PTMP/ipsets" ] || [ -f "$PERSIST_DIR/ipsets" ]; then set -- "$@" "$PTMP/ipsets"; fi
  sync "$@" 2>/dev/null || sync
  fault_point persist
  mv -f "$@" "$PERSIST_DIR/"
  sync "$PERSIST_DIR" 2>/dev/null || sync
}

# split_candidate(d): "v4 text, split line, v6 text[, split line, ipsets]" from
# stdin into rules.v4, rules.v6 and ipsets of d; the set lines also into cand[1..nc]
# and the tables, as "4 filter", into order[1..n].
SPLIT_AWK='function split_candidate(d,  l, out, fam) {
    out = d "/rules.v4"; printf "" > (d "/rules.v6"); printf "" > (d "/ipsets"); fam = 4
    while ((getline l < "/dev/stdin") > 0) {
      if (l == split_line) { out = d "/rules.v6"; fam = 6; continue }
      if (l == sets_line) { out = d "/ipsets"; fam = 0; continue }
      print l > out
      if (fam == 0) cand[++nc] = l; else if (l ~ /^\*/) order[++n] = fam " " substr(l, 2)
    } }
'
split_stdin() { # DIR
  awk -v d="$1" -v split_line="$SPLIT" -v sets_line="$SETS_SPLIT" "$SPLIT_AWK"' BEGIN { split_candidate(d) }' \
    || die "$E_SPACE" "cannot write $1: disk full?"
}

# prepare in one pass, from the candidate on stdin and the live dumps now.raw,
# now.4, now.6 in d: the candidate split into rules.v4, rules.v6 and ipsets;
# backups that really restore, backup.v4 and backup.v6 (every table the
# candidate replaces is in them, so a table that did not exist before is reset
# to empty, policies ACCEPT); for the sets, the candidate's that do not exist
# yet, created and filled (sets.new; no rule matches them before the load) and
# listed (sets.created), and two loads for `ipset restore -exist`, the other
# candidate sets' (sets.load) and the live fleetfw sets' (backup.load): each set
# made sure to exist, filled as a temporary one, then swapped in. With stale=yes,
# the canonical text of the live rules (now.canon) for the stale check, compared
# here with expect_canon when given (exit 3 when they differ). And the start of
# the transaction: started (ISO) and started_epoch.
PREPARE_AWK='
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
  BEGIN {
    t = now_epoch(); print iso(t) > (d "/started"); print t > (d "/started_epoch")
    load = d "/sets.load"; printf "" > (d "/backup.load"); printf "" > (d "/sets.new"); printf "" > (d "/sets.created"); printf "" > load
    split_candidate(d)
  }
  FILENAME == d "/now.raw" {
    if ($1 == "create") { have[$2] = 1; if ($2 == "fleetfw--swap") print "destroy fleetfw--swap" > load }
    if (($1 == "create" || $1 == "add") && $2 ~ /^fleetfw-/ && $2 != "fleetfw--swap") swap_in(d "/backup.load")
    next }
  { fam = FILENAME == d "/now.4" ? 4 : 6; print > (d "/backup.v" fam); if (/^\*/) tab[fam, substr($0, 2)] = 1 }
  END {
    end_set()
    for (i = 1; i <= nc; i++) {
      $0 = cand[i]
      if ($1 == "create") fresh = !($2 in have)
      if (!fresh) swap_in(load)
      else { print > (d "/sets.new"); if ($1 == "create") print $2 > (d "/sets.created") }
    }
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
    if (stale != "yes") exit 0
    c = d "/now.canon"
    canon(d "/now.4", d "/now.6", d "/now.raw", c)
    if (expect_canon != "" && !same_text(c, expect_canon)) exit 3
  }'

# confirm's check, with the live dumps V4 V6 SETS and the transaction dir d:
# exit 1 unless their canonical text (confirm.canon) is that of the dumps taken
# right after the load (loaded.4, .6, .raw; loaded.canon, whose hash the
# generation records); fleetfw's live sets that the candidate's no longer has
# into gone; the time into confirmed_at; the candidate into the generation g
# (its ipsets file only when it has sets).
CONFIRM_AWK='function copy(f,  l) { while ((getline l < (d "/" f)) > 0) print l > (g "/" f); close(d "/" f) }
  BEGIN { # V4 V6 SETS
    if ((getline l < (d "/loaded.4")) <= 0) exit 1
    close(d "/loaded.4")
    canon(d "/loaded.4", d "/loaded.6", d "/loaded.raw", d "/loaded.canon")
    canon(ARGV[1], ARGV[2], ARGV[3], d "/confirm.canon")
    if (!same_text(d "/confirm.canon", d "/loaded.canon")) exit 1
    while ((getline l < (d "/ipsets")) > 0) { split(l, w, " "); if (w[1] == "create") keep[w[2]] = 1 }
    close(d "/ipsets")
    printf "" > (d "/gone")
    while ((getline l < ARGV[3]) > 0) {
      split(l, w, " "); if (w[1] == "create" && w[2] ~ /^fleetfw-/ && !(w[2] in keep)) print w[2] > (d "/gone")
    }
    print iso(now_epoch()) > (d "/confirmed_at")
    copy("rules.v4"); copy("rules.v6"); copy("ipsets")
    exit 0 }'

# Shared by this script (confirm) and the revert script, defined once: end the
# watchdog (or timer) of transaction $id. The watchdog leads its own process
# group, so its sleep goes with it (no `--`: dash takes it for a pid). Its pid
# may be another process's by now (killed, then reused): only a process whose
# command line names this transaction is ours.
STOP_WATCHDOG='stop_watchdog() {
  [ -f "$T/watchdog" ] || return 0
  IFS= read -r wd <"$T/watchdog" || true
  case "$wd" in
    pid:*)
      cmd=
      { IFS= read -r cmd <"/proc/${wd#pid:}/cmdline"; } 2>/dev/null || true
      case "$cmd" in *"$id"*) kill -KILL "-${wd#pid:}" 2>/dev/null || true ;; esac ;;
    unit:*) systemctl stop "${wd#unit:}.timer" >/dev/null 2>&1 || true ;;
  esac
}'
eval "$STOP_WATCHDOG"

# The revert (rules and sets); run by the watchdog, the timer, an abort
# or a failed load. Written into the transaction so it outlives this script
# (from a variable: printf is a builtin, cat would be a process).
REVERT_SH='#!/bin/sh
# fleetfw revert: restore the backup unless the transaction was confirmed first.
#   revert.sh TXID watchdog SECONDS | revert.sh TXID timer | revert.sh TXID now REASON
#   revert.sh - sets: put the live fleetfw sets of before back (backup.load).
S=${FLEETFW_STATE:-/var/lib/fleetfw}
T=$S/txn
id=$1
mode=$2
reason=${3:-}
'"$STOP_WATCHDOG"'
load_sets() {
  [ -s "$T/backup.load" ] || return 0
  ipset destroy fleetfw--swap 2>/dev/null || true
  ipset restore -exist <"$T/backup.load"
}
if [ "$mode" = sets ]; then load_sets; exit; fi
if [ "$mode" = watchdog ]; then
  # HUP, INT and TERM are already ignored: inherited from prepare.
  trap "" HUP INT TERM
  sleep "$3"
  reason="no confirmation within ${3}s"
fi
[ "$mode" = timer ] && reason="no confirmation within the window"
# The one atomic step: whoever first renames the marker of this transaction decides.
mv "$T/pending.$id" "$T/reverting.$id" 2>/dev/null || exit 0
# Reverted now (abort, failed load, changed rules): the watchdog has nothing left to do.
[ "$mode" != now ] || stop_watchdog
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
exit "$rc"'

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

cmd_facts() { # [canonical VERIFIED_VERSION]
  # Named now: `set --` below takes the positional parameters for the hashes.
  want_canonical=${1:-} verified=${2:-}
  [ -d "$S" ] || { mkdir -p "$S" && chmod 0700 "$S"; }
  # Every dump taken once, into files; one awk prints them and makes both
  # hashes' texts, one sha256sum hashes both (a plan runs this on every host).
  own_scratch=no
  [ -n "$SCRATCH" ] || { SCRATCH=$(mktemp -d) && own_scratch=yes; }
  f=$SCRATCH/facts
  dump_live "$f.4" "$f.6" "$f.raw"
  # `# Generated by iptables-save v1.8.9 (nf_tables) on ...`: the version
  # without another process; `iptables -V` when no table is loaded.
  first=
  IFS= read -r first <"$f.4" || true
  case "$first" in
    '# Generated by '*' v'*' ('*')'*) ipt_v=${first#*-save v}; ipt_v="iptables v${ipt_v%% on *}" ;;
    *) ipt_v=$(iptables -V 2>/dev/null || true) ;;
  esac
  backend "$ipt_v"
  sets=no; has ipset && sets=yes
  echo "fleetfw-facts 1"
  echo "backend=$b"
  if [ -d /run/systemd/system ]; then echo "systemd=yes"; else echo "systemd=no"; fi
  if has iptables-restore && has ip6tables-restore; then echo "restore=yes"; else echo "restore=no"; fi
  if has netfilter-persistent || [ -d /usr/share/netfilter-persistent ]; then echo "persistent=yes"; else echo "persistent=no"; fi
  echo "ipset=$sets"
  if [ -e /usr/share/netfilter-persistent/plugins.d/10-ipset ]; then echo "ipset_persistent=yes"; else echo "ipset_persistent=no"; fi
  getv current "$S/current" 0
  echo "generation=$current"
  if [ -d "$T" ]; then
    alive=no; watchdog_alive && alive=yes
    echo "txn=$(val "$T/id" unknown) state=$(txn_state) watchdog=$alive started=$(val "$T/started" unknown) user=$(val "$T/user" unknown)"
  else
    echo "txn=none"
  fi
  echo "boot_id=$BOOT_ID"
  LC_ALL=C awk "$CANON_AWK"' BEGIN {
      f = ARGV[1]
      n = fleet_sets(f ".raw", a); canon_sorted(f ".4", f ".6", a, n, f ".hl"); canon(ARGV[2] "/rules.v4", ARGV[2] "/rules.v6", ARGV[2] "/ipsets", f ".hp")
      print "--- v4"; while ((getline l <(f ".4")) > 0) print l
      print "--- v6"; while ((getline l <(f ".6")) > 0) print l
      if (ARGV[3] == "yes") { print "--- ipsets"; for (i = 1; i <= n; i++) print a[i] }
      exit }' "$f" "$PERSIST_DIR" "$sets"
  # shellcheck disable=SC2046 # two "HASH  FILE" lines
  set -- $(sha256sum "$f.hl" "$f.hp")
  # More key=value lines (parseFacts reads them as the first ones).
  echo "--- meta"
  echo "live_hash=$1"
  echo "persisted_hash=$3"
  # A kept script's prepare compares its live text with this one (see cmd_prepare).
  [ "$own_scratch" = yes ] || echo "$1" >"$f.hash"
  # A kept host script (serve) reuses the scratch files and removes them at its end.
  [ "$own_scratch" = no ] || rm -rf "$SCRATCH"
  # Listening sockets, so a live plan can warn about services the new rules block.
  echo "--- listeners"
  listeners
  # Optional: candidate rules on stdin, printed back the way this host's own
  # iptables-save prints them, from a throwaway network namespace. Skipped when
  # this host runs the iptables that fleetfw's own formatter is verified against
  # (VERIFIED_VERSION): the restore costs more than everything else facts does.
  if [ "$want_canonical" = canonical ]; then
    echo "--- canonical"
    # `iptables v1.8.9 (nf_tables)` -> 1.8.9-nf_tables, without a process.
    version=${ipt_v#iptables v}
    backend_name=${version#* (}
    version=${version%% *}-${backend_name%)}
    if [ -n "$verified" ] && [ "$version" = "$verified" ]; then
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
  { echo "$txid" >"$T/id" && echo "$4" >"$T/user" && echo "$5" >"$T/plan_hash" \
    && echo "$BOOT_ID" >"$T/boot_id"; } 2>/dev/null || die "$E_SPACE" "cannot write $T: disk full?"
  # One read of the live rules: the stale check, the backups, the sets' backup.
  dump_live "$T/now.4" "$T/now.6" "$T/now.raw" || die "$E_SPACE" "cannot write the backup: disk full?"
  # The stale check. In a kept script whose facts reported the expected hash,
  # the text that hash was taken of is at hand: compared in the awk, no hash.
  stale=yes seen='' expect_canon=''
  [ "$expected" != "-" ] || stale=no
  [ -z "$SCRATCH" ] || getv seen "$SCRATCH/facts.hash"
  [ "$stale" = no ] || [ "$seen" != "$expected" ] || expect_canon=$SCRATCH/facts.hl
  rc=0
  LC_ALL=C awk -v d="$T" -v split_line="$SPLIT" -v sets_line="$SETS_SPLIT" -v stale="$stale" -v expect_canon="$expect_canon" \
    "$TIME_AWK$CANON_AWK$SPLIT_AWK$PREPARE_AWK" "$T/now.raw" "$T/now.4" "$T/now.6" 2>"$T/test.err" || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 3 ] || die "$E_SPACE" "cannot write the candidate and its backup: $(head -c 300 "$T/test.err")"
  fault_point upload
  getv started "$T/started"
  if [ "$rc" = 3 ] || { [ "$stale" = yes ] && [ -z "$expect_canon" ]; }; then
    actual=$(sha256sum <"$T/now.canon")
    actual=${actual%% *}
    [ "$actual" = "$expected" ] || die "$E_STALE" "live rules changed since they were read (expected $expected, found $actual)"
  fi
  [ ! -s "$T/ipsets" ] || check_set_tools
  # Missing sets are created empty, so that `iptables-restore -t` finds them (no
  # rule uses them yet); their members are loaded once the revert is armed.
  [ ! -s "$T/sets.new" ] || ipset restore <"$T/sets.new" 2>"$T/test.err" || die "$E_TEST" "cannot create the ipsets: $(head -c 500 "$T/test.err")"
  iptables-restore -t <"$T/rules.v4" 2>"$T/test.err" || die "$E_TEST" "iptables-restore -t refused the IPv4 rules: $(head -c 500 "$T/test.err")"
  ip6tables-restore -t <"$T/rules.v6" 2>"$T/test.err" || die "$E_TEST" "ip6tables-restore -t refused the IPv6 rules: $(head -c 500 "$T/test.err")"
  printf '%s\n' "$REVERT_SH" >"$T/revert.sh" || die "$E_SPACE" "cannot write the revert script: disk full?"
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
  # What confirm checks the live rules against: missing, it refuses (and reverts).
  dump_live "$T/loaded.4" "$T/loaded.6" "$T/loaded.raw" || true
  echo "$started $txid prepared user=$4 plan=$5 window=$window" >>"$S/history.log"
  fault_point load
  echo "loaded txid=$txid"
}

# The new connection's sshd listens on loopback PORT for fleetfw (remote
# forwarding) and fleetfw answers TOKEN through it: reading TOKEN here proves,
# on the host, that a connection made after the load carries data both ways.
# bash's /dev/tcp connects (sh has none). A loopback the new rules drop would
# hang the connect: after 1 s fleetfw confirms with a command instead.
new_connection_answers() { # PORT TOKEN
  has bash && has timeout || return 1
  # Debian's bash reads ~/.bashrc when SSH_CLIENT says sshd started it: not this one.
  _got=$(unset SSH_CLIENT SSH2_CLIENT BASH_ENV; exec timeout 1 bash --noprofile --norc -c \
    'exec 3<>"/dev/tcp/127.0.0.1/$1" && IFS= read -r t <&3 && printf %s "$t"' fleetfw-confirm "$1" </dev/null 2>/dev/null) || return 1
  [ "$_got" = "$2" ]
}

cmd_confirm() { # TXID KEEP SOURCE [PORT TOKEN]
  [ $# -eq 3 ] || [ $# -eq 5 ] || die "$E_USAGE" "confirm TXID KEEP SOURCE [PORT TOKEN]"
  txid=$1 keep=$2 source=$3
  getv id "$T/id"
  if [ ! -d "$T" ] || [ "$id" != "$txid" ]; then
    getv outcome "$S/txns/$txid/outcome" "unknown transaction"
    die "$E_NOTXN" "transaction $txid is not pending: $outcome"
  fi
  if [ $# -eq 5 ] && ! new_connection_answers "$4" "$5"; then
    die "$E_LOOPBACK" "no answer through the new connection on loopback port $4"
  fi
  getv txn_boot "$T/boot_id"
  if [ "$txn_boot" != "$BOOT_ID" ]; then
    recover_stale >&2 || true
    die "$E_CHANGED" "the host rebooted inside the window: it runs its persisted rules"
  fi
  # One read of the live rules, straight into the persist dir's temp files:
  # checked against what was loaded, then persisted as they are.
  dump_for_persist || die "$E_SPACE" "cannot write $PERSIST_DIR: disk full?"
  # The generation this makes, filled by the check below; gone again unless confirmed.
  getv current "$S/current" 0
  gen=$((current + 1))
  gen_dir "$gen"
  # Left over by a confirm that died before deciding: it may hold another candidate's sets.
  [ ! -e "$g" ] || rm -rf "$g"
  mkdir -p "$g" || die "$E_SPACE" "cannot write $g: disk full?"
  if ! LC_ALL=C awk -v d="$T" -v g="$g" "$TIME_AWK$CANON_AWK$CONFIRM_AWK" "$PTMP/rules.v4" "$PTMP/rules.v6" "$PTMP/ipsets"; then
    rm -rf "$g" "$PTMP/rules.v4" "$PTMP/rules.v6" "$PTMP/ipsets"
    sh "$T/revert.sh" "$txid" now "rules changed inside the window" || true
    die "$E_CHANGED" "the live rules changed inside the window; reverted"
  fi
  fault_point confirm
  mv "$T/pending.$txid" "$T/confirmed.$txid" 2>/dev/null || { rm -rf "$g"; die "$E_LATE" "too late: the revert won the race"; }
  # Confirmed: finish even if the session dies now.
  trap '' HUP INT TERM PIPE
  stop_watchdog
  # fleetfw sets the confirmed rules no longer match (a set in use refuses to go);
  # the persisted sets are then those that remain.
  if [ -s "$T/gone" ]; then
    gone=
    while IFS= read -r set; do if ipset destroy "$set" 2>/dev/null; then gone="$gone $set"; fi; done <"$T/gone"
    [ -z "$gone" ] || ipset save >"$PTMP/ipsets" 2>/dev/null || true
  fi
  persist_dumps
  # shellcheck disable=SC2046 # "HASH  FILE"
  set -- $(sha256sum "$T/loaded.canon")
  getv when "$T/confirmed_at"
  getv user "$T/user"
  getv plan_hash "$T/plan_hash"
  {
    echo "generation=$gen"; echo "txid=$txid"; echo "user=$user"; echo "when=$when"
    echo "plan_hash=$plan_hash"; echo "source=$source"; echo "hash=$1"
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
  gen_dir "$1"
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
  # Read per verb: a kept script (serve) can outlive a boot of the host.
  getv BOOT_ID /proc/sys/kernel/random/boot_id unknown
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
