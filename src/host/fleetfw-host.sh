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
#   revert   (a guard at the deadline, or a failure) rename pending.TXID ->
#            reverting.TXID, restore the backup
#   outcome TXID  the host's own record of one transaction, as key=value lines:
#            txn=TXID
#            state=preparing|pending|reverting|confirmed|confirmed-unpersisted|
#                  reverted|revert-failed|none   (none: no trace of it on this host)
#            watchdog=yes|no   (a guard of it, or the runner of its revert, is alive)
#            reason=TEXT       (one line: the host's reason for a revert or a failed persist)
#            generation=N      (confirmed, confirmed-unpersisted)
#            live_hash=HASH    (the live rules' canonical hash, as facts prints it)
# The rename is the single atomic step that decides between confirm and revert.
# The markers carry the transaction id so that a late guard of an earlier
# transaction can never touch a later one. A finished transaction moves to
# txns/TXID (the last few are kept) with its outcome: one line, `confirmed:
# generation N`, `confirmed-unpersisted: generation N: REASON`, `reverted: REASON`
# or `revert-failed: REASON`; last_txn names the newest.
#
# The revert survives the death of any one of its processes. Two guards, each able
# to revert alone: two watchdog processes, each in its own session, spared by the
# OOM killer (oom_score_adj -1000); where systemd runs, a systemd timer and one
# watchdog. Their deadline is time since boot (txn/deadline), so a clock step moves
# nothing, and a killed sleep only wakes its guard early: it reads the clock again.
# At the deadline each races for the rename; the loser watches the winner (its pid
# in txn/reverter) and finishes the revert if the winner dies. The confirm ends
# every guard. A reboot inside the window boots the persisted (old) rules.
#
# Persisted files (rules.v4, rules.v6 and ipsets in $PERSIST_DIR) are always the old
# ones or complete new ones that load (persist_checked): written as temporary files
# in the same directory, every write checked, fsynced, loaded the way a boot loads
# them in a throwaway network namespace, renamed over, the directory fsynced. The
# persist follows the rename to confirmed: a confirmed transaction whose persist fails
# runs its rules with the old files, is recorded as confirmed-unpersisted with the
# cause (and in $S/unpersisted), and the next prepare persists again, through the
# same path, before it changes anything. facts reports whether each persisted file
# loads (tested once per content: $S/persisted.ok holds the hashes last tested).
#
# Lock ages use the boot id and the time since boot, never the time of day.
#
# A plan runs `facts` on every host (and `canonical` where facts wants the candidate:
# a host without the iptables fleetfw's formatter is verified against) and an apply
# adds `prepare` and `confirm`:
# every process they start is started fleet-wide, so they take each dump once,
# reuse it, and read and write small files with the shell's own builtins.
#
# The awk programs (*.awk) and the shell this script runs from strings (guard-lib.sh,
# boot-test.sh, revert.sh) are files beside it, each linted and tested on its own
# (programs.host.test.ts). `NAME='#include FILE'` stands for the text of FILE: its
# code without its header comment and final newline (a newline before the closing
# quote is part of the string). assemble.ts puts them in: the build writes the
# assembled script (dist/host/fleetfw-host.sh, what the package ships), a checkout
# assembles it when it runs. None of them holds a single quote.
#
# A && B || die is the intended idiom here: die when either step fails (SC2015);
# getv assigns its variable through eval (SC2154); awk programs and the shell run
# from strings are single-quoted on purpose (SC2016).
# shellcheck disable=SC2015,SC2154,SC2016
set -eu

S=${FLEETFW_STATE:-/var/lib/fleetfw}
T=$S/txn
PERSIST_DIR=${FLEETFW_PERSIST_DIR:-/etc/iptables}
# The clocks of lock ages and guard deadlines. Other files only in tests: like the
# two above, they come from the environment, which sudo resets.
UPTIME_FILE=${FLEETFW_UPTIME_FILE:-/proc/uptime}
BOOT_ID_FILE=${FLEETFW_BOOT_ID_FILE:-/proc/sys/kernel/random/boot_id}
# How the kernel prints addresses in /proc/net (Linux 6.2 and later), and how many
# sockets that lists.
BYTEORDER_FILE=${FLEETFW_BYTEORDER_FILE:-/sys/kernel/cpu_byteorder}
PROC_NET=${FLEETFW_PROC_NET:-/proc/net}
SOCKSTAT_FILE=$PROC_NET/sockstat
# The kernel's modules (sets_now).
MODULES_DIR=${FLEETFW_MODULES_DIR:-/sys/module}
SPLIT='# fleetfw-split v6'
SETS_SPLIT='# fleetfw-split ipsets'
NL='
'
# Scratch files of reads (facts, serve, outcome): outside $S, so a host whose state
# disk is full can still be read, and prepare says why it cannot go on. SCRATCH is
# their prefix: $RUN_DIR/PID.UPTIME. in a directory of root's own (tmpfs where /run
# is one), else a mktemp directory (scratch_open).
RUN_DIR=${FLEETFW_RUN_DIR:-/run/fleetfw}
SCRATCH=

# Exit codes, mirrored in src/host/run.ts (HostExit). E_PERSIST: confirmed, but the
# persisted files could not be replaced (prepare: the last confirmed rules could not
# be persisted, nothing changed); the message says why.
E_USAGE=64 E_TEST=65 E_LOAD=66 E_LOCKED=75 E_STALE=76 E_NOTXN=70 E_CHANGED=71 E_LATE=72 E_ARM=73 E_TOOL=74 E_SPACE=77 E_LOOPBACK=78 E_PERSIST=79

die() { code=$1; shift; echo "fleetfw-host: $*" >&2; exit "$code"; }
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
# The first line of FILE into the variable NAME (DEFAULT when FILE is missing),
# read by the shell itself: no process, and no subshell as $(...) would take.
getv() { _v=${3:-}; [ ! -r "$2" ] || IFS= read -r _v <"$2" || true; eval "$1=\$_v"; }
val() { getv _val "$@"; printf '%s\n' "$_val"; }
has() { command -v "$1" >/dev/null 2>&1; }
# TEXT on one line (a tool's message can have several) into ol.
oneline() { ol=$1; while :; do case "$ol" in *"$NL"*) ol="${ol%%"$NL"*} ${ol#*"$NL"}" ;; *) return 0 ;; esac; done; }
# FILE's lines but blank ones and usage hints, on one line, into fe; at most 5: the cause comes first.
first_err() {
  fe='' _n=0
  [ -r "$1" ] || return 0
  while [ "$_n" -lt 5 ] && { IFS= read -r _l || [ -n "$_l" ]; }; do
    case "$_l" in ''|'Try `'*) continue ;; esac
    fe="${fe:+$fe }$_l" _n=$((_n + 1))
  done <"$1"
}

# Fault injection for the end-to-end tests: pause at a step while the file
# $S/faults/pause-NAME exists (at most 60 s). Inert in production: $S is 0700
# root, so only root on the host could arm it.
fault_point() {
  [ -e "$S/faults/pause-$1" ] || return 0
  : >"$S/faults/at-$1" 2>/dev/null || true
  fp_n=0
  while [ -e "$S/faults/pause-$1" ] && [ "$fp_n" -lt 600 ]; do sleep 0.1; fp_n=$((fp_n + 1)); done
}

# The time of day inside awk (time.awk): now_epoch() and iso(T), a date process
# fewer.
TIME_AWK='#include time.awk
'
# Sets exist only with the ip_set module: where sysfs lists modules and ip_set is not
# among them, `ipset save` would print nothing (a process fewer per dump). Asked at each
# dump: a prepare that creates sets loads the module. Into HAVE_IPSET.
sets_now() {
  HAVE_IPSET=no
  has ipset || return 0
  [ -d "$MODULES_DIR" ] && [ ! -d "$MODULES_DIR/ip_set" ] || HAVE_IPSET=yes
}
save4() { iptables-save 2>/dev/null || true; }
save6() { ip6tables-save 2>/dev/null || true; }
# What "the same rules" means for hashes (canon.awk): canon(V4, V6, SETS, OUT) and
# its parts, same_text(F1, F2).
CANON_AWK='#include canon.awk'
# The listening sockets from /proc/net: proc_sockets(DIR).
SOCKETS_AWK='#include sockets.awk'
# The live rules into V4 and V6 and the raw `ipset save` into SETS (empty
# without ipset): read once, reused. Reads only (facts, outcome): iptables-save
# does not report a failed write, so whatever is kept or persisted is read
# through dump (DUMP_AWK), which checks every write.
dump_live() { # V4 V6 SETS
  save4 >"$1" && save6 >"$2" || return 1
  sets_now
  if [ "$HAVE_IPSET" = yes ]; then ipset save >"$3" 2>/dev/null || : >"$3"; else : >"$3"; fi
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


# Shared by this script and the revert script (guard-lib.sh, spliced into revert.sh):
# uptime_cs, ours PID, stop_watchdog, retire.
GUARD_LIB='#include guard-lib.sh'
# This script is no guard: stop_watchdog spares nothing of it.
# shellcheck disable=SC2034 # read by GUARD_LIB
me=''
eval "$GUARD_LIB"

# Is anything still running for the transaction in txn/: a guard (watchdog process
# or systemd timer) or the runner of its revert? After a reboot nothing is: the
# recorded pids (and transient units) are gone.
guard_alive() {
  getv txn_boot "$T/boot_id"
  [ "$txn_boot" = "$BOOT_ID" ] || return 1
  getv id "$T/id"
  getv wd "$T/watchdog"
  getv rv "$T/reverter"
  for w in $wd "pid:${rv%% *}"; do
    case "$w" in
      pid:) ;;
      pid:*) ! ours "${w#pid:}" || return 0 ;;
      unit:*) ! systemctl is-active --quiet "${w#unit:}.timer" "${w#unit:}.service" 2>/dev/null || return 0 ;;
    esac
  done
  return 1
}

# The state of the transaction in txn/ into st, its id into id.
txn_state() {
  getv id "$T/id" none
  for st in pending confirmed reverting; do [ ! -e "$T/$st.$id" ] || return 0; done
  st=preparing
}

record() { echo "$(now) $*" >>"$S/history.log"; }

# The directory of generation N into g: zero-padded to 6 digits, so that a glob
# lists generations in order.
gen_dir() { # N
  g=00000$1
  if [ "${#1}" -ge 6 ]; then g=$1; else g=${g#"${g%??????}"}; fi
  g=$S/generations/$g
}

# Close out the transaction in txn/ (retire), keeping the last few for inspection.
retire_txn() {
  getv id "$T/id" unknown
  retire && prune "$S/txns" 5 && prune_now
}

# Keep the newest KEEP entries of DIR: their names sort by age (zero-padded
# generation numbers, timestamped transaction ids), and a glob sorts them. The
# older ones are added to doomed, removed by prune_now: one rm for a confirm's
# generations and transactions.
doomed=
prune() { # DIR KEEP
  keep=$2
  set -- "$1"/*
  [ -e "$1" ] || return 0
  n=$(( $# - keep ))
  while [ "$n" -gt 0 ]; do doomed="$doomed$1$NL"; shift; n=$((n - 1)); done
}
prune_now() {
  [ -n "$doomed" ] || return 0
  set -f
  _ifs=$IFS IFS=$NL
  # shellcheck disable=SC2086 # one path a line
  set -- $doomed
  IFS=$_ifs
  set +f
  doomed=
  rm -rf "$@"
}

# How long ago, in seconds, the transaction in txn/ took the lock (txn/lock: boot id
# and time since boot), into age; a lock of an earlier boot is older than any. A lock
# with nothing in it yet (its prepare between mkdir and its first write, or killed
# there) counts from when it was first seen (txn/lock.seen).
lock_age() {
  getv lk "$T/lock"
  [ -n "$lk" ] || getv lk "$T/lock.seen"
  if [ -z "$lk" ]; then
    # Written by a script without lock files: its boot id alone can tell an earlier boot.
    getv lb "$T/boot_id"
    if [ -n "$lb" ] && [ "$lb" != "$BOOT_ID" ]; then age=999999; return 0; fi
    age=0
    uptime_cs || return 0
    # Not written (state disk full): seen as new again next time, and refused as young.
    { echo "$BOOT_ID $up" >"$T/lock.seen"; } 2>/dev/null || return 0
    return 0
  fi
  case "$lk" in "$BOOT_ID "*) ;; *) age=999999; return 0 ;; esac
  lup=${lk#* }
  case "$lup" in ''|*[!0-9]*) lup=0 ;; esac
  # No clock to read (never on Linux): young, refused rather than taken.
  age=0
  uptime_cs || return 0
  age=$(( (up - lup) / 100 ))
}

# A transaction left behind by a crash, a kill or a reboot: settle it so that
# the host is on its old rules (or confirmed ones, persisted) and the lock is free.
# Prints what it did; 1: not stale (something still runs for it, or it is young).
# Runs inside `if` (set -e is off there): every step is checked explicitly.
recover_stale() {
  [ -d "$T" ] || return 0
  ! guard_alive || return 1
  txn_state
  lock_age
  # A transaction still being prepared (or arming its guards) is not stale.
  if [ "$age" -lt 120 ] && { [ "$st" = preparing ] || { [ "$st" = pending ] && [ ! -s "$T/watchdog" ]; }; }; then
    return 1
  fi
  getv txn_boot "$T/boot_id"
  case "$st" in
    pending|reverting)
      if [ "$txn_boot" != "$BOOT_ID" ]; then
        { [ ! -e "$T/pending.$id" ] || mv "$T/pending.$id" "$T/reverting.$id"; } \
          && echo "reverted: the host rebooted inside the window; it booted its persisted rules" >"$T/outcome" \
          && record "$id reverted-by-reboot" && retire_txn \
          || die "$E_SPACE" "cannot settle transaction $id, left by a reboot: disk full?"
        echo "recovered: host rebooted inside the window; it booted its persisted rules"
      elif [ -f "$T/backup.v4" ]; then
        # This version's revert script (it reads the same files): one left by an older
        # version may not know how to finish a revert.
        printf '%s\n' "$REVERT_SH" >"$T/revert.sh" || die "$E_SPACE" "cannot write $T/revert.sh: disk full?"
        rc=0
        if [ "$st" = pending ]; then sh "$T/revert.sh" "$id" now "stale transaction without a watchdog" || rc=$?
        else sh "$T/revert.sh" "$id" finish "an interrupted revert" || rc=$?; fi
        [ "$rc" = 0 ] || die "$E_LOAD" "reverting stale transaction $id failed (exit $rc): see its outcome in $S/txns/$id"
        if [ "$st" = pending ]; then echo "recovered: reverted stale transaction"; else echo "recovered: finished an interrupted revert"; fi
      else
        die "$E_LOCKED" "transaction $id is $st without its backup: settle $T by hand"
      fi ;;
    confirmed)
      if [ "$txn_boot" != "$BOOT_ID" ]; then
        # Rebooted between the confirmation and its persist: it booted the old files.
        echo "confirmed-unpersisted: the host rebooted before the persist; it booted its persisted (older) rules" >"$T/outcome" \
          && record "$id confirmed-rebooted-unpersisted" && retire_txn \
          || die "$E_SPACE" "cannot settle transaction $id, left by a reboot: disk full?"
        echo "recovered: host rebooted before persisting a confirmed transaction; it booted its persisted rules"
      else
        # Confirmed but its persist did not finish: the same end as a confirm's, on the rules as they run now.
        finish_confirm yes
        echo "recovered: finished persisting a confirmed transaction"
      fi ;;
    *)
      drop_new_sets
      echo "reverted: abandoned while $st; nothing was loaded" >"$T/outcome" && record "$id abandoned-$st" && retire_txn \
        || die "$E_SPACE" "cannot settle transaction $id: disk full?"
      echo "recovered: removed a transaction abandoned while $st (rules untouched)" ;;
  esac
}

# dump(d, p, sets): the live rules into d/p.4, d/p.6 and d/p.raw, every write
# checked (dump.awk).
DUMP_AWK='#include dump.awk
'
# The live rules into DIR/PREFIX.4, .6 and .raw, every write checked; derr: why not.
dump_checked() { # DIR PREFIX
  sets_now
  if LC_ALL=C awk -v d="$1" -v p="$2" -v sets="$HAVE_IPSET" "$DUMP_AWK"' BEGIN { exit dump(d, p, sets) ? 0 : 4 }' 2>"$1/$2.err"; then return 0; fi
  first_err "$1/$2.err"
  derr=${fe:-cannot write $1: disk full?}
  return 1
}

# Copies SRC DST [SRC DST...], every write checked (copy.awk).
COPY_AWK='#include copy.awk'

# Would these files load at boot? Loaded as netfilter-persistent loads them (the
# sets, then each family's rules, tested) in a throwaway network namespace: sets are
# per namespace, and the rules must find theirs in the file, not among the live ones.
# Where no namespace can be made (a container), the rules are tested here, the sets
# not (boot-test.sh). So are files without sets that match none (HERE=yes): only sets
# tell a namespace from this one, and two processes fewer (unshare, sh). Sets l4, l6,
# ls (loads, fails, missing or untested) and lerr (one line); 1 when a file fails.
# Files that are missing or empty (what iptables-persistent saves where no table is
# loaded) load as nothing at boot: so answered (an empty set file too, namespace or
# not), with no process.
BOOT_TEST='#include boot-test.sh'
loads_at_boot() { # V4 V6 SETS ERR [HERE]
  l4=missing l6=missing ls=missing lerr=
  if nothing_to_load "$1" && nothing_to_load "$2" && { [ -z "$3" ] || nothing_to_load "$3"; }; then
    [ ! -e "$1" ] || l4=loads
    [ ! -e "$2" ] || l6=loads
    [ -z "$3" ] || [ ! -e "$3" ] || ls=loads
    return 0
  fi
  ns=yes rc=0
  if [ "${5:-}" = yes ] && [ -z "$3" ]; then rc=1
  else unshare -n /bin/sh -c "$BOOT_TEST" fleetfw-boot-test "$1" "$2" "$3" "$4" yes 2>/dev/null || rc=$?
  fi
  case "$rc" in
    1[6-9]|2[0-3]) ;;
    # In a subshell: a fork, no sh to start.
    *) ns=no rc=0; (set -- "$1" "$2" "$3" "$4" no; eval "$BOOT_TEST") || rc=$? ;;
  esac
  [ ! -e "$1" ] || { l4=loads; [ $((rc & 2)) = 0 ] || l4=fails; }
  [ ! -e "$2" ] || { l6=loads; [ $((rc & 4)) = 0 ] || l6=fails; }
  if [ -n "$3" ] && [ -e "$3" ]; then
    if [ "$ns" = no ]; then ls=untested; else ls=loads; [ $((rc & 1)) = 0 ] || ls=fails; fi
  fi
  [ "$ls" != fails ] || { first_err "$4.s"; lerr="ipsets: $fe"; }
  [ "$l4" != fails ] || { first_err "$4.4"; lerr="${lerr:+$lerr; }rules.v4: $fe"; }
  [ "$l6" != fails ] || { first_err "$4.6"; lerr="${lerr:+$lerr; }rules.v6: $fe"; }
  [ -z "$lerr" ]
}

# FILE is not there, or is an empty regular file.
nothing_to_load() { [ ! -e "$1" ] || { [ -f "$1" ] && [ ! -s "$1" ]; }; }

# The persisted files' hashes, from sha256sum's "HASH FILE" words, into pkey: "V4 V6
# SETS", - for a file that is not there. EMPTY_SHA256: what sha256sum prints for an empty file.
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
pkey_of() { # HASH FILE ...
  _k4=- _k6=- _ks=-
  while [ $# -ge 2 ]; do
    case "$2" in */rules.v4) _k4=$1 ;; */rules.v6) _k6=$1 ;; */ipsets) _ks=$1 ;; esac
    shift 2
  done
  pkey="$_k4 $_k6 $_ks"
}

# The one way persisted files are written. From SRC.4, SRC.6 and SRC.raw (a checked
# dump): temporary files in $PTMP, a directory of the persist dir (a rename does not
# cross file systems), written 0640 with every write checked, fsynced, loaded as a
# boot would load them, renamed over the old ones, the directory fsynced. Any failure
# keeps the old files and leaves its cause in perr (1). On success l4, l6 and ls say
# how the files loaded. Also runs inside `if`: every step is checked explicitly.
PTMP=$PERSIST_DIR/.fleetfw-tmp
persist_checked() { # SRC
  src=$1 perr='' e=$T/persist.err
  if ! { [ -d "$PERSIST_DIR" ] || mkdir -m 0755 "$PERSIST_DIR"; } 2>"$e" || ! { [ -d "$PTMP" ] || mkdir -m 0750 "$PTMP"; } 2>"$e"; then
    first_err "$e"; perr="cannot create $PTMP: ${fe:-disk full?}"; return 1
  fi
  # The ipsets the rules match: ipset-persistent loads them at boot, before the rules.
  set -- "$src.4" "$PTMP/rules.v4" "$src.6" "$PTMP/rules.v6"
  if [ -s "$src.raw" ] || [ -f "$PERSIST_DIR/ipsets" ]; then set -- "$@" "$src.raw" "$PTMP/ipsets"; tsets=$PTMP/ipsets; else tsets=; fi
  umask 027
  if ! refs=$(LC_ALL=C awk "$COPY_AWK" "$@" 2>"$e"); then
    umask 077
    first_err "$e"; perr="cannot write the new files in $PTMP: ${fe:-disk full?}"
    # The room a partial file took goes back.
    rm -f "$PTMP/rules.v4" "$PTMP/rules.v6" "$PTMP/ipsets"
    return 1
  fi
  umask 077
  set -- "$PTMP/rules.v4" "$PTMP/rules.v6" ${tsets:+"$tsets"}
  if ! sync "$@" 2>"$e"; then first_err "$e"; perr="cannot fsync the new files in $PTMP: $fe"; rm -f "$@"; return 1; fi
  here=yes
  [ -z "$refs" ] || here=no
  if ! loads_at_boot "$PTMP/rules.v4" "$PTMP/rules.v6" "$tsets" "$T/boot" "$here"; then
    perr="the new files would not load at boot: $lerr"; rm -f "$@"; return 1
  fi
  fault_point persist
  if ! mv -f "$@" "$PERSIST_DIR/" 2>"$e"; then first_err "$e"; perr="cannot rename the new files into $PERSIST_DIR: $fe"; return 1; fi
  if ! sync "$PERSIST_DIR" 2>"$e"; then first_err "$e"; perr="cannot fsync $PERSIST_DIR: $fe"; return 1; fi
}

# The persisted files' hashes with how they loaded, for facts ($S/persisted.ok); with
# EXTRA first, its hash into xh (confirm: the loaded rules' canonical text).
note_persisted() { # [EXTRA]
  set -- ${1:+"$1"}
  for x in rules.v4 rules.v6 ipsets; do [ ! -f "$PERSIST_DIR/$x" ] || set -- "$@" "$PERSIST_DIR/$x"; done
  hs=
  [ $# -eq 0 ] || hs=$(sha256sum "$@") || return 1
  # shellcheck disable=SC2086 # "HASH  FILE" words
  set -- $hs
  xh=
  case "${2:-}" in */rules.v4|*/rules.v6|*/ipsets) ;; *) xh=$1; shift 2 ;; esac
  pkey_of "$@"
  echo "$pkey $l4 $l6 $ls" >"$S/persisted.ok"
}

# The end of a confirmation, once confirmed.$id is there; shared by confirm and by the
# recovery of a confirm that died (FRESH=yes: the live rules read again, as they run
# now). Ends the guards, drops the sets the rules no longer match, persists through
# persist_checked, records the generation, retires the transaction. A failed persist
# leaves the old files, is recorded (confirmed-unpersisted, $S/unpersisted) and ends
# the script with E_PERSIST. Also runs inside `if`: every step is checked explicitly.
finish_confirm() { # FRESH
  stop_watchdog
  fresh=$1
  # fleetfw sets the confirmed rules no longer match (a set in use refuses to go);
  # the persisted sets are then those that remain.
  if [ -s "$T/gone" ]; then
    gone=
    while IFS= read -r set; do if ipset destroy "$set" 2>/dev/null; then gone="$gone $set"; fi; done <"$T/gone"
    [ -z "$gone" ] || fresh=yes
  fi
  pok=no
  if [ "$fresh" = yes ] && ! dump_checked "$T" confirm; then perr="cannot read the live rules: $derr"
  elif persist_checked "$T/confirm"; then pok=yes
  fi
  getv gen "$T/gen"
  getv when "$T/confirmed_at"
  [ -n "$when" ] || when=$(now)
  # The hash of the loaded rules' canonical text, for the generation (none from a prepare of an older script).
  lc=$T/loaded.canon xh=
  [ -f "$lc" ] || lc=
  if [ "$pok" = yes ]; then
    : >"$T/persisted" && note_persisted "$lc" \
      || die "$E_SPACE" "confirmed and persisted, but cannot record it in $S: disk full?"
  elif [ -n "$lc" ]; then
    xh=$(sha256sum <"$lc") || die "$E_SPACE" "confirmed, but cannot read $lc"
    xh=${xh%% *}
  fi
  if [ -n "$gen" ]; then
    gen_dir "$gen"
    getv user "$T/user"
    getv plan_hash "$T/plan_hash"
    getv source "$T/source"
    getv keep "$T/keep" 5
    {
      echo "generation=$gen"; echo "txid=$id"; echo "user=$user"; echo "when=$when"
      echo "plan_hash=$plan_hash"; echo "source=$source"; echo "hash=$xh"
    } >"$g/meta" && echo "$gen" >"$S/current.tmp" && mv "$S/current.tmp" "$S/current" && prune "$S/generations" "$keep" \
      || die "$E_SPACE" "confirmed, but cannot record generation $gen in $S: disk full?"
  fi
  word=confirmed
  [ "$1" = no ] || word=confirmed-persist-recovered
  if [ "$pok" = yes ]; then
    echo "confirmed: generation ${gen:-?}" >"$T/outcome" && echo "$when $id $word generation=${gen:-?}" >>"$S/history.log" \
      && { [ ! -s "$S/unpersisted" ] || : >"$S/unpersisted"; } \
      || die "$E_SPACE" "confirmed and persisted, but cannot record it in $S: disk full?"
  else
    oneline "$perr"
    perr=$ol
    echo "confirmed-unpersisted: generation ${gen:-?}: $perr" >"$T/outcome" \
      && echo "$when $id confirmed-unpersisted generation=${gen:-?} $perr" >>"$S/history.log" \
      && echo "$id ${gen:--} $perr" >"$S/unpersisted" \
      || die "$E_SPACE" "confirmed, but not persisted ($perr), and cannot record it in $S: disk full?"
  fi
  retire_txn || die "$E_SPACE" "confirmed, but cannot retire $T: disk full?"
  [ "$pok" = no ] || return 0
  [ "$1" = no ] || die "$E_PERSIST" "transaction $id was confirmed (generation ${gen:-?}) but its persist had not finished, and persisting now failed: $perr; nothing changed (the host runs its confirmed rules and would boot older ones)"
  echo "confirmed generation=${gen:-?} unpersisted"
  die "$E_PERSIST" "confirmed (generation ${gen:-?}), but not persisted: $perr; the host runs the new rules and would boot its old ones (the next transaction persists them first)"
}

# The rules of a confirmed transaction whose persist failed ($S/unpersisted: TXID GEN
# REASON), persisted now as they run, through persist_checked; its record then says
# confirmed. By prepare, holding the lock, before anything changes.
persist_again() { # BY_TXID
  getv unp "$S/unpersisted"
  utx=${unp%% *} ugen=${unp#* }
  ugen=${ugen%% *}
  if ! dump_checked "$T" again; then perr="cannot read the live rules: $derr"
  elif persist_checked "$T/again"; then
    note_persisted && : >"$S/unpersisted" \
      && { [ ! -d "$S/txns/$utx" ] || echo "confirmed: generation $ugen" >"$S/txns/$utx/outcome"; } \
      && record "$utx persisted (retried by $1)" \
      || die "$E_SPACE" "persisted the rules of $utx, but cannot record it in $S: disk full?"
    return 0
  fi
  oneline "$perr"
  die "$E_PERSIST" "the rules confirmed by transaction $utx (generation $ugen) are not persisted, and persisting them failed again: $ol; nothing changed"
}

# split_candidate(d): the candidate on stdin into rules.v4, rules.v6 and ipsets of d
# (split.awk).
SPLIT_AWK='#include split.awk
'
split_stdin() { # DIR
  awk -v d="$1" -v split_line="$SPLIT" -v sets_line="$SETS_SPLIT" "$SPLIT_AWK"' BEGIN { split_candidate(d) }' \
    || die "$E_SPACE" "cannot write $1: disk full?"
}


# prepare in one pass (prepare.awk): the candidate split, the backups, the set
# loads, the stale check's text and the start time, from one read of the live rules.
PREPARE_AWK='#include prepare.awk'

# confirm's check (confirm.awk): the live rules read, checked against those loaded,
# the sets to drop, the time, the generation's copy of the candidate.
CONFIRM_AWK='#include confirm.awk'

# The revert (rules and sets): revert.sh, with GUARD_LIB spliced in; run by the
# guards, an abort, a failed load or changed rules. Written into the transaction so
# it outlives this script (from a variable: printf is a builtin, cat would be a
# process).
REVERT_SH='#include revert.sh'

# Two guards, each able to revert alone at the deadline (time since boot): a
# systemd timer and one watchdog where systemd runs, else two watchdogs. A watchdog
# is a detached process in its own session, which outlives this SSH session; its
# pid is its process group.
arm_watchdog() { # WINDOW TXID
  uptime_cs || die "$E_ARM" "cannot read the time since boot from $UPTIME_FILE"
  echo "$((up + $1 * 100))" >"$T/deadline" || die "$E_SPACE" "cannot write $T/deadline: disk full?"
  guards='' n=2
  if [ -d /run/systemd/system ] && has systemd-run; then
    unit="fleetfw-revert-$2"
    systemd-run --quiet --unit "$unit" --on-active="$1s" --timer-property=AccuracySec=100ms -p OOMScoreAdjust=-1000 \
      --setenv=FLEETFW_STATE="$S" --setenv=FLEETFW_UPTIME_FILE="$UPTIME_FILE" /bin/sh "$T/revert.sh" "$2" timer >/dev/null 2>&1 \
      || die "$E_ARM" "systemd-run could not arm the revert timer"
    guards="unit:$unit" n=1
  fi
  has setsid || die "$E_ARM" "setsid not found: cannot arm the revert watchdog"
  # Ignored before the fork, so a watchdog is immune from its first instant
  # (ignored signals stay ignored across exec): armed once it exists.
  trap '' HUP INT TERM
  while [ "$n" -gt 0 ]; do
    FLEETFW_STATE="$S" FLEETFW_UPTIME_FILE="$UPTIME_FILE" setsid /bin/sh "$T/revert.sh" "$2" guard "$1" </dev/null >/dev/null 2>&1 &
    guards="${guards:+$guards }pid:$!"
    n=$((n - 1))
  done
  trap - HUP INT TERM
  if ! echo "$guards" >"$T/watchdog"; then
    for w in $guards; do
      case "$w" in pid:*) kill -KILL "-${w#pid:}" 2>/dev/null || : ;; unit:*) systemctl stop "${w#unit:}.timer" >/dev/null 2>&1 || : ;; esac
    done
    die "$E_SPACE" "cannot write $T/watchdog: disk full?"
  fi
  for w in $guards; do
    case "$w" in pid:*) kill -0 "${w#pid:}" 2>/dev/null || die "$E_ARM" "a revert watchdog did not start" ;; esac
  done
}

# The record of a retired transaction (DIR: txns/ID) into ost, ogen and oreason:
# its outcome line; without one (a script older than outcome files), its markers.
read_outcome() { # DIR ID
  ost='' ogen='' oreason=''
  getv _o "$1/outcome"
  if [ -z "$_o" ]; then
    if [ -e "$1/confirmed.$2" ]; then ost=confirmed
    elif [ -e "$1/reverting.$2" ]; then ost=reverted oreason="no record of how the revert went"
    else ost=reverted oreason="abandoned before its load"; fi
    return 0
  fi
  ost=${_o%%: *}
  _r=${_o#"$ost"}
  _r=${_r#: }
  case "$ost" in
    confirmed|confirmed-unpersisted)
      case "$_r" in "generation "*) _r=${_r#generation }; ogen=${_r%%:*}; _r=${_r#"$ogen"}; _r=${_r#: } ;; esac
      case "$ogen" in *[!0-9]*) ogen= ;; esac ;;
    reverted|revert-failed) ;;
    *) ost=revert-failed _r="unreadable record: $_o" ;;
  esac
  oreason=$_r
}

# SCRATCH for a read, unless a kept script (serve) set it; own_scratch: whether this
# call did. In $RUN_DIR no mktemp and no rm per read: the files are named by pid and
# time since boot (unique while their process lives; a pid comes back only after the
# pid space wrapped), emptied by scratch_close, and removed in one rm, those of
# processes gone, once more than 256 are there.
scratch_open() {
  own_scratch=no
  [ -z "$SCRATCH" ] || return 0
  own_scratch=yes
  # Root's own directory, not a link: the names are predictable.
  if { [ -d "$RUN_DIR" ] || mkdir -m 0700 "$RUN_DIR" 2>/dev/null; } && [ ! -L "$RUN_DIR" ] && [ -O "$RUN_DIR" ] && [ -w "$RUN_DIR" ]; then
    uptime_cs || :
    SCRATCH=$RUN_DIR/$$.$up.
    set -- "$RUN_DIR"/*
    # Liveness by /proc: only where it shows this process.
    [ $# -gt 256 ] && [ -d "/proc/$$" ] || return 0
    _n=$#
    for _x; do
      _p=${_x#"$RUN_DIR"/}
      _p=${_p%%.*}
      case "$_p" in ''|*[!0-9]*) continue ;; esac
      [ -d "/proc/$_p" ] || set -- "$@" "$_x"
    done
    shift "$_n"
    [ $# -eq 0 ] || rm -f "$@" 2>/dev/null || :
  else
    SCRATCH=$(mktemp -d)/
  fi
}
scratch_close() {
  [ "$own_scratch" = yes ] || return 0
  case "$SCRATCH" in
    */) rm -rf "$SCRATCH" ;;
    *) for _x in "$SCRATCH"*; do [ ! -s "$_x" ] || { true >"$_x"; } 2>/dev/null || :; done ;;
  esac
  SCRATCH=
}

cmd_facts() { # [canonical VERIFIED_VERSION]
  # Named now: `set --` below takes the positional parameters for the hashes.
  want_canonical=${1:-} verified=${2:-}
  [ -d "$S" ] || { mkdir -p "$S" && chmod 0700 "$S"; }
  # Every dump taken once, into files; one awk prints them, writes both canonical
  # texts and compares them. fleetfw hashes the printed dumps itself (canon.ts):
  # sha256sum runs here only for persisted files (the boot test's cache key) and for
  # a live text with bytes past ASCII, which fleetfw could not hash byte for byte (a
  # new host: no process).
  scratch_open
  f=${SCRATCH}facts
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
    alive=no; ! guard_alive || alive=yes
    txn_state
    getv started "$T/started" unknown
    getv user "$T/user" unknown
    echo "txn=$id state=$st watchdog=$alive started=$started user=$user"
  else
    echo "txn=none"
  fi
  # The newest finished transaction, so that status can settle an apply's unknown.
  getv last "$S/last_txn"
  case "$last" in
    ''|*/*|.*) ;;
    *) if [ -d "$S/txns/$last" ]; then
         read_outcome "$S/txns/$last" "$last"
         echo "last_txn=$last state=$ost${ogen:+ generation=$ogen}${oreason:+ reason=$oreason}"
       fi ;;
  esac
  # Confirmed rules that are not persisted (the next prepare persists them first).
  getv unp "$S/unpersisted"
  if [ -n "$unp" ]; then
    utx=${unp%% *} ugen=${unp#* }
    ureason=${ugen#* } ugen=${ugen%% *}
    echo "unpersisted=$utx generation=$ugen reason=$ureason"
  fi
  echo "boot_id=$BOOT_ID"
  # Listening sockets, so that a live plan can warn about services the new rules
  # block: from /proc/net, in this awk, where the kernel says its byte order and the
  # host holds fewer than 2,000 sockets (/proc/net lists every connection, which ss
  # filters in the kernel); else from ss below (3 to 10 ms: the dearest process of a
  # read).
  getv order "$BYTEORDER_FILE"
  case "$order" in little|big) ;; *) order= ;; esac
  _s1='' _s2=''
  if [ -r "$SOCKSTAT_FILE" ]; then { IFS= read -r _s1 && IFS= read -r _s2; } <"$SOCKSTAT_FILE" || order=; else order=; fi
  _used=${_s1##* } _tw=${_s2#* tw }
  _tw=${_tw%% *}
  case "$_s1/$_used/$_tw" in
    'sockets: used '*/[0-9]*/[0-9]*) case "$_used$_tw" in *[!0-9]*) order= ;; *) [ $((_used + _tw)) -lt 2000 ] || order= ;; esac ;;
    *) order= ;;
  esac
  [ -r "$PROC_NET/tcp" ] || order=
  # A dump line that looks like a section header (a rule comment may hold a newline)
  # would cut the answer short where fleetfw reads it: refused, never misread.
  LC_ALL=C awk "$CANON_AWK$SOCKETS_AWK"' BEGIN {
      f = ARGV[1]; hi = sprintf("[%c-%c]", 128, 255); high = 0
      n = fleet_sets(f ".raw", a); canon_sorted(f ".4", f ".6", a, n, f ".hl"); canon(ARGV[2] "/rules.v4", ARGV[2] "/rules.v6", ARGV[2] "/ipsets", f ".hp")
      print "--- v4"; while ((getline l <(f ".4")) > 0) { print l; if (l ~ hi) high = 1; if (l ~ /^--- /) bad = "IPv4" }
      print "--- v6"; while ((getline l <(f ".6")) > 0) { print l; if (l ~ hi) high = 1; if (l ~ /^--- /) bad = "IPv6" }
      if (ARGV[3] == "yes") { print "--- ipsets"; for (i = 1; i <= n; i++) { print a[i]; if (a[i] ~ hi) high = 1 } }
      if (bad != "") { print "fleetfw-host: a line of the live " bad " rules starts with \"--- \" (a rule comment holding a newline): fleetfw cannot read these rules" >"/dev/stderr"; exit 74 }
      print high, same_text(f ".hl", f ".hp") >(f ".flags"); close(f ".flags")
      if (ARGV[4] != "") { print "--- sockets"; print "byteorder=" ARGV[4]; proc_sockets(ARGV[5]) }
      exit }' "$f" "$PERSIST_DIR" "$sets" "$order" "$PROC_NET"
  high=1 same=0
  read -r high same <"$f.flags" || :
  # An empty persisted file (iptables-persistent saves no tables as that) is keyed
  # by the hash of nothing, unhashed. Where sha256sum runs anyway, it hashes the
  # live text too: a kept script's prepare then compares texts instead of hashing
  # (see cmd_prepare).
  set -- "$f.hl"
  empty=
  for x in rules.v4 rules.v6 ipsets; do
    if [ -s "$PERSIST_DIR/$x" ]; then set -- "$@" "$PERSIST_DIR/$x"
    elif [ -f "$PERSIST_DIR/$x" ]; then empty="$empty $EMPTY_SHA256 $PERSIST_DIR/$x"; fi
  done
  live_hash=
  if [ "$high" != 0 ] || [ $# -gt 1 ]; then
    # shellcheck disable=SC2046 # "HASH  FILE" words: the live text's, then the persisted files'
    set -- $(sha256sum "$@")
    [ "${2:-}" != "$f.hl" ] || { live_hash=$1; shift 2; }
  else
    set --
  fi
  # fleetfw cannot hash such a text byte for byte: without the host's hash, no answer.
  [ "$high" = 0 ] || [ -n "$live_hash" ] || die "$E_TOOL" "cannot hash the live rules (sha256sum failed)"
  # shellcheck disable=SC2086 # "HASH FILE" words
  pkey_of "$@" $empty
  # More key=value lines (parseFacts reads them as the first ones).
  echo "--- meta"
  [ -z "$live_hash" ] || echo "live_hash=$live_hash"
  if [ "$same" = 1 ]; then echo "persisted_same=yes"; else echo "persisted_same=no"; fi
  # Would the persisted files load at boot? Tested once per content: the hashes last
  # tested, with how the files loaded, are in persisted.ok (persist_checked writes it
  # too); other bytes are tested (loads_at_boot: 3 to 4 processes; none where nothing
  # is persisted or the files are empty, as on a new host).
  getv tested "$S/persisted.ok"
  # shellcheck disable=SC2086 # "$pkey L4 L6 LS": the three words after the key
  case "$tested" in
    "$pkey "*) set -- ${tested#"$pkey "}; l4=${1:-missing} l6=${2:-missing} ls=${3:-missing} lerr='' ;;
    *) if loads_at_boot "$PERSIST_DIR/rules.v4" "$PERSIST_DIR/rules.v6" "$PERSIST_DIR/ipsets" "$f.boot"; then
         # Only a cache: unwritten (state disk full), the next facts tests again.
         { echo "$pkey $l4 $l6 $ls" >"$S/persisted.ok"; } 2>/dev/null || echo "fleetfw-host: cannot write $S/persisted.ok" >&2
       fi ;;
  esac
  echo "persisted_v4=$l4"
  echo "persisted_v6=$l6"
  echo "persisted_sets=$ls"
  [ -z "$lerr" ] || echo "persisted_error=$lerr"
  # A kept script's prepare compares its live text with this one (see cmd_prepare)
  # when the host hashed it (empty otherwise: prepare hashes, unless fleetfw says
  # its own hash of this read is the expected one: `read`).
  [ "$own_scratch" = yes ] || echo "$live_hash" >"$f.hash"
  # A kept host script (serve) reuses the scratch files and empties them at its end.
  scratch_close
  if [ -z "$order" ]; then echo "--- listeners"; listeners; fi
  # Optional: whether this host prints rules as fleetfw's own formatter does. It
  # does when it runs the iptables that formatter is verified against
  # (VERIFIED_VERSION); otherwise fleetfw sends the candidate to `canonical`. Nothing
  # is read here: the candidate crosses the wire only for a host that needs it.
  if [ "$want_canonical" = canonical ]; then
    echo "--- canonical"
    # `iptables v1.8.9 (nf_tables)` -> 1.8.9-nf_tables, without a process.
    version=${ipt_v#iptables v}
    backend_name=${version#* (}
    version=${version%% *}-${backend_name%)}
    if [ -n "$verified" ] && [ "$version" = "$verified" ]; then echo "skipped: iptables $version"; else echo "wanted: iptables $version"; fi
  fi
  echo "--- end"
}

# The candidate rules on stdin, printed back the way this host's own iptables-save
# prints them, from a throwaway network namespace (sets are per namespace: the
# candidate's must exist there for its rules to load).
cmd_canonical() {
  echo "--- canonical"
  d=$(mktemp -d)
  split_stdin "$d"
  # shellcheck disable=SC2016 # expanded by the inner shell
  if unshare -n sh -c '{ [ ! -s "$3" ] || ipset restore <"$3"; } && iptables-restore <"$1" && ip6tables-restore <"$2" && iptables-save && echo "--- canonical-v6" && ip6tables-save' \
    sh "$d/rules.v4" "$d/rules.v6" "$d/ipsets" >"$d/out" 2>"$d/err"; then
    cat "$d/out"
  else
    echo "unavailable: $(head -c 300 "$d/err" | tr '\n' ' ')"
  fi
  rm -rf "$d"
  echo "--- end"
}

# The canonical hash of the live rules, as facts prints it, into lh (a read: scratch files).
live_hash() {
  scratch_open
  f=${SCRATCH}outcome
  dump_live "$f.4" "$f.6" "$f.raw"
  LC_ALL=C awk "$CANON_AWK"' BEGIN { f = ARGV[1]; canon(f ".4", f ".6", f ".raw", f ".hl"); exit }' "$f"
  lh=$(sha256sum <"$f.hl")
  lh=${lh%% *}
  scratch_close
}

# The host's own record of transaction TXID (see the header), for fleetfw to decide
# how it ended. Exit 0 whenever it could answer.
cmd_outcome() { # TXID
  [ $# -eq 1 ] || die "$E_USAGE" "outcome TXID"
  case "$1" in */*|.*) die "$E_USAGE" "outcome: bad transaction id $1" ;; esac
  txid=$1 ost=none ogen='' oreason='' alive=no
  getv cur "$T/id"
  if [ -d "$T" ] && [ "$cur" = "$txid" ]; then
    ! guard_alive || alive=yes
    txn_state
    case "$st" in
      confirmed)
        # Its confirm is finishing, or died before its end (the next prepare finishes it).
        getv ogen "$T/gen"
        if [ -e "$T/persisted" ]; then ost=confirmed
        else ost=confirmed-unpersisted oreason="confirmed; its persist has not finished (the next transaction on this host finishes it)"; fi ;;
      reverting)
        ost=reverting
        getv rv "$T/reverter"
        [ -z "$rv" ] || oreason=${rv#* } ;;
      *) ost=$st ;;
    esac
  elif [ -d "$S/txns/$txid" ]; then
    read_outcome "$S/txns/$txid" "$txid"
  elif [ -s "$S/history.log" ]; then
    # No longer kept in txns/: its last line in the history.
    h=$(awk -v id="$txid" '$2 == id { l = $0 } END { print l }' "$S/history.log")
    set -f
    # shellcheck disable=SC2086 # TIME TXID WORD REST...
    set -- $h
    set +f
    if [ $# -ge 3 ]; then
      word=$3
      shift 3
      case "$word" in
        confirmed|confirmed-persist-recovered) ost=confirmed ogen=${1#generation=} ;;
        confirmed-unpersisted) ost=confirmed-unpersisted ogen=${1#generation=}; shift; oreason=$* ;;
        reverted|revert-failed) ost=$word oreason=$* ;;
        reverted-by-reboot) ost=reverted oreason="the host rebooted inside the window; it booted its persisted rules" ;;
        abandoned-*) ost=reverted oreason="abandoned while ${word#abandoned-}; nothing was loaded" ;;
        *) oreason="only its $word is in the history" ;;
      esac
      case "$ogen" in *[!0-9]*) ogen= ;; esac
    fi
  fi
  live_hash
  echo "txn=$txid"
  echo "state=$ost"
  echo "watchdog=$alive"
  oneline "$oreason"
  [ -z "$ol" ] || echo "reason=$ol"
  [ -z "$ogen" ] || echo "generation=$ogen"
  echo "live_hash=$lh"
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

cmd_prepare() { # TXID WINDOW EXPECTED_HASH USER PLAN_HASH [read]
  [ $# -eq 5 ] || { [ $# -eq 6 ] && [ "$6" = read ]; } || die "$E_USAGE" "prepare TXID WINDOW EXPECTED_HASH USER PLAN_HASH [read]"
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
  # The lock's age counts from here, by boot id and time since boot (lock_age).
  uptime_cs || die "$E_TOOL" "cannot read the time since boot from $UPTIME_FILE"
  { echo "$BOOT_ID $up" >"$T/lock" && echo "$txid" >"$T/id" && echo "$4" >"$T/user" && echo "$5" >"$T/plan_hash" \
    && echo "$BOOT_ID" >"$T/boot_id"; } 2>/dev/null || die "$E_SPACE" "cannot write $T: disk full?"
  # The last confirmed rules not persisted yet: persisted first, so that a reboot
  # inside this window boots them; nothing changes unless that works.
  [ ! -s "$S/unpersisted" ] || persist_again "$txid"
  # One read of the live rules: the stale check, the backups, the sets' backup.
  # In a kept script whose facts reported the expected hash, or whose read fleetfw
  # hashed and found to be the expected one (`read`), the text that hash was taken
  # of is at hand: compared in the awk, no hash.
  stale=yes seen='' expect_canon=''
  [ "$expected" != "-" ] || stale=no
  [ -z "$SCRATCH" ] || getv seen "${SCRATCH}facts.hash"
  [ "${6:-}" != read ] || [ -z "$SCRATCH" ] || [ ! -s "${SCRATCH}facts.hl" ] || seen=$expected
  [ "$stale" = no ] || [ "$seen" != "$expected" ] || expect_canon=${SCRATCH}facts.hl
  rc=0
  sets_now
  LC_ALL=C awk -v d="$T" -v split_line="$SPLIT" -v sets_line="$SETS_SPLIT" -v stale="$stale" -v expect_canon="$expect_canon" -v sets="$HAVE_IPSET" \
    "$TIME_AWK$CANON_AWK$DUMP_AWK$SPLIT_AWK$PREPARE_AWK" "$T/now.raw" "$T/now.4" "$T/now.6" 2>"$T/test.err" || rc=$?
  case "$rc" in
    0|3) ;;
    4) first_err "$T/test.err"; die "$E_TOOL" "cannot read the live rules: $fe" ;;
    6) first_err "$T/test.err"; die "$E_TEST" "$fe" ;;
    *) first_err "$T/test.err"; die "$E_SPACE" "cannot write the candidate and its backup: ${fe:-disk full?}" ;;
  esac
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
    first_err "$T/load.err"
    err=$fe
    sh "$T/revert.sh" "$txid" now "the load failed: $err" || die "$E_LOAD" "loading the rules failed, and so did restoring the previous ones: $err"
    die "$E_LOAD" "loading the rules failed, previous rules restored: $err"
  fi
  # What confirm checks the live rules against, read once more, every write checked
  # (loaded.canon); without it no confirm could succeed: reverted now instead.
  sets_now
  if ! LC_ALL=C awk -v d="$T" -v sets="$HAVE_IPSET" "$CANON_AWK$DUMP_AWK"' BEGIN {
      if (!dump(d, "loaded", sets)) exit 4
      canon(d "/loaded.4", d "/loaded.6", d "/loaded.raw", d "/loaded.canon"); exit 0 }' 2>"$T/load.err" \
    || ! echo "$started $txid prepared user=$4 plan=$5 window=$window" >>"$S/history.log"; then
    first_err "$T/load.err"
    err="cannot record the loaded rules: ${fe:-disk full?}"
    sh "$T/revert.sh" "$txid" now "$err" || die "$E_LOAD" "$err, and restoring the previous rules failed"
    die "$E_LOAD" "$err; previous rules restored"
  fi
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
    # Settled whatever it finds (or dies saying why); the answer is the same.
    recover_stale >&2 || :
    die "$E_CHANGED" "the host rebooted inside the window: it runs its persisted rules"
  fi
  # The generation this makes, filled by the check below; gone again unless confirmed.
  getv current "$S/current" 0
  gen=$((current + 1))
  gen_dir "$gen"
  # Left over by a confirm that died before deciding: it may hold another candidate's sets.
  [ ! -e "$g" ] || rm -rf "$g"
  # txns/ too, which retire needs (a first confirm: one mkdir, not two).
  mkdir -p "$g" "$S/txns" 2>"$T/mkdir.err" || {
    rm -rf "$g"
    first_err "$T/mkdir.err"
    die "$E_SPACE" "cannot create $g or $S/txns: ${fe:-disk full?} (not confirmed; the host reverts at the end of the window)"
  }
  # One read of the live rules (every write checked), checked against what was loaded
  # and persisted as it is.
  rc=0
  sets_now
  LC_ALL=C awk -v d="$T" -v g="$g" -v sets="$HAVE_IPSET" "$TIME_AWK$CANON_AWK$DUMP_AWK$CONFIRM_AWK" 2>"$T/confirm.err" || rc=$?
  case "$rc" in
    0) ;;
    1|5)
      rm -rf "$g"
      why="rules changed inside the window"
      [ "$rc" = 1 ] || why="no record of the rules it loaded"
      rrc=0
      sh "$T/revert.sh" "$txid" now "$why" || rrc=$?
      case "$rrc" in
        0|3) die "$E_CHANGED" "the live rules changed inside the window; reverted" ;;
        *) die "$E_CHANGED" "the live rules changed inside the window; the revert failed (see outcome $txid)" ;;
      esac ;;
    *)
      rm -rf "$g"
      first_err "$T/confirm.err"
      code=$E_SPACE
      [ "$rc" != 4 ] || code=$E_TOOL
      die "$code" "cannot read and record the live rules (${fe:-disk full?}): not confirmed; the host reverts at the end of the window" ;;
  esac
  # What the end of the confirmation needs, also when a recovery finishes it.
  { echo "$gen" >"$T/gen" && echo "$keep" >"$T/keep" && echo "$source" >"$T/source"; } 2>/dev/null \
    || { rm -rf "$g"; die "$E_SPACE" "cannot write $T: disk full? (not confirmed; the host reverts at the end of the window)"; }
  fault_point confirm
  mv "$T/pending.$txid" "$T/confirmed.$txid" 2>/dev/null || { rm -rf "$g"; die "$E_LATE" "too late: the revert won the race"; }
  # Confirmed: finish even if the session dies now.
  trap '' HUP INT TERM PIPE
  fault_point confirmed
  finish_confirm no
  echo "confirmed generation=$gen"
}

cmd_abort() { # TXID REASON
  [ $# -eq 2 ] || die "$E_USAGE" "abort TXID REASON"
  getv cur "$T/id"
  [ -d "$T" ] && [ "$cur" = "$1" ] || die "$E_NOTXN" "transaction $1 is not pending"
  txn_state
  case "$st" in
    pending)
      rc=0
      sh "$T/revert.sh" "$1" now "$2" || rc=$?
      case "$rc" in
        0) ;;
        3) die "$E_LATE" "too late: transaction $1 was decided meanwhile" ;;
        *) die "$E_LOAD" "the revert failed" ;;
      esac ;;
    reverting)
      # A revert that stalled: finished here, unless a guard or its runner still lives.
      ! guard_alive || die "$E_LOCKED" "transaction $1 is being reverted"
      printf '%s\n' "$REVERT_SH" >"$T/revert.sh" || die "$E_SPACE" "cannot write $T/revert.sh: disk full?"
      sh "$T/revert.sh" "$1" finish "$2" || die "$E_LOAD" "the revert failed" ;;
    confirmed) die "$E_LATE" "transaction $1 is confirmed" ;;
    *) die "$E_NOTXN" "transaction $1 is not loaded yet" ;;
  esac
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

# verify --live: probes from this host and listeners on it (live-probe.pl says
# what goes in and out). Perl does both in one process; without perl, each probe
# is a socat of its own, else bash's /dev/tcp (tcp only), and listeners are socats.
LIVE_PROBE_PL='#include live-probe.pl'

probe_tool() {
  tool=${FLEETFW_PROBE_TOOL:-}
  [ -n "$tool" ] && return 0
  if has perl; then tool=perl; elif has socat; then tool=socat; elif has bash && has timeout; then tool=bash; else tool=none; fi
}

probe_one() { # TOOL ID PROTO ADDR PORT MS
  secs=$(printf '%d.%03d' $(($6 / 1000)) $(($6 % 1000)))
  fam=4 host=$4
  case $4 in *:*) fam=6 host="[$4]" ;; esac
  v='' rc=0
  case $1:$3 in
    socat:tcp) out=$(socat -u OPEN:/dev/null "TCP$fam:$host:$5,connect-timeout=$secs" 2>&1) || rc=$? ;;
    socat:udp)
      out=$(printf 'fleetfw-probe\n' | socat -T"$secs" -t"$secs" - "UDP$fam:$host:$5" 2>&1) || rc=$?
      case $out in *fleetfw-probe*) v=open ;; esac ;;
    bash:tcp) out=$(timeout "$secs" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$4" "$5" 2>&1) || rc=$? ;;
    *) v="error no-tool-for-$3" ;;
  esac
  if [ -z "$v" ]; then
    case $out in
      *'Connection refused'*) v=refused ;;
      # No route from this host: nothing left it, so it proves nothing of the destination.
      *'Network is unreachable'*) v='error no-route-from-here' ;;
      *'No route to host'*|*'unreachable'*) v=unreachable ;;
      *'timed out'*|*'Operation not permitted'*) v=timeout ;;
      *) if [ "$rc" = 124 ] || [ "$3" = udp ]; then v=timeout; elif [ "$rc" = 0 ]; then v=open; else v="error exit-$rc"; fi ;;
    esac
  fi
  echo "$2 - $v"
}

probe_line_ok() { # ID PROTO ADDR PORT MS
  case $1 in ''|*[!0-9]*) return 1 ;; esac
  case $2 in tcp|udp|icmp) ;; *) return 1 ;; esac
  case $3 in ''|*[!0-9a-fA-F.:]*) return 1 ;; esac
  case $4 in -) [ "$2" = icmp ] ;; ''|*[!0-9]*) return 1 ;; esac
  case $5 in ''|*[!0-9]*) return 1 ;; esac
}

cmd_probe() {
  probe_tool
  echo "tool=$tool"
  echo "--- probes"
  if [ "$tool" = perl ]; then
    perl -e "$LIVE_PROBE_PL" probe
  else
    # One background probe each, their answers gathered in order.
    SCRATCH=$(mktemp -d)
    trap 'rm -rf "$SCRATCH"' EXIT
    trap 'exit 129' HUP PIPE TERM
    n=0
    while read -r id proto addr port ms; do
      probe_line_ok "$id" "$proto" "$addr" "$port" "$ms" || { echo "$id - error bad-probe"; continue; }
      n=$((n + 1))
      probe_one "$tool" "$id" "$proto" "$addr" "$port" "$ms" >"$SCRATCH/$n" &
      # At most 64 at once.
      [ $((n % 64)) -ne 0 ] || wait
    done
    wait
    i=0
    while [ "$i" -lt "$n" ]; do i=$((i + 1)); cat "$SCRATCH/$i"; done
  fi
  echo "--- end"
}

port_use() { # PROTO ADDR PORT: ours, existing (bound on ADDR or a wildcard covering its family), busy (elsewhere only) or free
  case " $ours " in *" $1/$2/$3 "*) echo ours; return 0 ;; esac
  use=free
  has ss || { echo "$use"; return 0; }
  # ss shows a dual-stack socket as *, an IPv6-only wildcard as [::].
  case $2 in *:*) covering=" * [::] [$2] " ;; *) covering=" * 0.0.0.0 $2 [::ffff:$2] " ;; esac
  for local in $(ss -Hln --"$1" "sport = :$3" 2>/dev/null | awk '{ print $4 }'); do
    a=${local%:*}
    b=${a#[}
    case " $ours " in *" $1/${b%]}/$3 "*) continue ;; esac
    case $covering in *" $a "*) echo existing; return 0 ;; esac
    use=busy
  done
  echo "$use"
}

cmd_listen() { # MAX_SECONDS
  [ $# -eq 1 ] || die "$E_USAGE" "listen MAX_SECONDS"
  case "$1" in ''|*[!0-9]*) die "$E_USAGE" "listen MAX_SECONDS" ;; esac
  probe_tool
  if [ "$tool" = perl ]; then exec perl -e "$LIVE_PROBE_PL" listen "$1"; fi
  has socat && has ss || die "$E_TOOL" "neither perl nor socat and ss on this host: no listener for verify --live"
  pids='' ours=''
  trap 'for p in $pids; do kill "$p" 2>/dev/null || true; done' EXIT
  # A lost channel (SIGPIPE on the next write, SIGHUP) still ends the listeners.
  trap 'exit 129' HUP PIPE TERM
  while read -r id proto addr port; do
    [ "$id" = end ] && break
    probe_line_ok "$id" "$proto" "$addr" "$port" 0 && [ "$proto" != icmp ] || { echo "$id error bad-listener"; continue; }
    case $(port_use "$proto" "$addr" "$port") in
      ours) echo "$id started"; continue ;;
      existing) echo "$id existing"; continue ;;
      busy) echo "$id busy"; continue ;;
    esac
    case $addr in *:*) a="6-LISTEN:$port,bind=[$addr],ipv6only=1" at="[$addr]:$port" ;; *) a="4-LISTEN:$port,bind=$addr" at="$addr:$port" ;; esac
    # UDP without reuseaddr: never sharing a port with a service of the host.
    if [ "$proto" = tcp ]; then
      timeout "$1" socat "TCP$a,reuseaddr,fork" SYSTEM:true </dev/null >/dev/null 2>&1 &
    else
      timeout "$1" socat "UDP$(echo "$a" | sed 's/-LISTEN/-RECVFROM/'),fork" PIPE </dev/null >/dev/null 2>&1 &
    fi
    pid=$!
    # Up once ss shows it bound there (socat binds within milliseconds; at most 5 s).
    i=0
    while [ "$i" -lt 50 ] && kill -0 "$pid" 2>/dev/null && ! ss -Hln --"$proto" "sport = :$port" 2>/dev/null | awk '{ print $4 }' | grep -qxF "$at"; do
      sleep 0.1
      i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ] && has ss; then
      pids="$pids $pid" ours="$ours $proto/$addr/$port"
      echo "$id started"
    else
      kill "$pid" 2>/dev/null || true
      echo "$id error socat-did-not-listen"
    fi
  done
  echo ready
  cat >/dev/null
  echo stopped
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
  getv BOOT_ID "$BOOT_ID_FILE" unknown
  verb=${1:-}
  [ $# -gt 0 ] && shift
  case "$verb" in
    facts) cmd_facts "$@" ;;
    canonical) cmd_canonical ;;
    prepare) cmd_prepare "$@" ;;
    confirm) cmd_confirm "$@" ;;
    abort) cmd_abort "$@" ;;
    outcome) cmd_outcome "$@" ;;
    history) cmd_history ;;
    generation) cmd_generation "$@" ;;
    ensure-persistent) cmd_ensure_persistent ;;
    listeners) cmd_listeners ;;
    show) cmd_show "$@" ;;
    kernel-log) cmd_kernel_log "$@" ;;
    probe) cmd_probe ;;
    listen) cmd_listen "$@" ;;
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
  scratch_open
  io=${SCRATCH}io
  trap 'own_scratch=yes; scratch_close' EXIT
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
