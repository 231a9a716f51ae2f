#!/bin/sh
# fleetfw revert: restore the backup unless the transaction was confirmed first.
#   revert.sh TXID guard WINDOW   a guard: wait for the deadline, then revert, or watch
#                                 the revert another runner took and finish it if it dies
#   revert.sh TXID timer          the same, started by the systemd timer at the deadline
#   revert.sh TXID now REASON     revert at once (abort, failed load, changed rules); exit 3: not pending
#   revert.sh TXID finish REASON  finish a revert whose runner died (the caller saw nothing else run it)
# Written into the transaction (txn/revert.sh) so that it outlives the host script
# that armed it, from REVERT_SH of the host script; run by the guards, an abort, a
# failed load or changed rules. No `set -e`: a revert goes on whatever fails, and
# says so in its outcome. Tested by transaction.host.test.ts (guards killed one by
# one, on a real host) and programs.host.test.ts (now and finish, with stand-ins
# for the tools).
S=${FLEETFW_STATE:-/var/lib/fleetfw}
T=$S/txn
UPTIME_FILE=${FLEETFW_UPTIME_FILE:-/proc/uptime}
id=$1
mode=$2
reason=${3:-}
me=pid:$$
# The guard library: the assembler (assemble.ts) splices in GUARD_LIB of the host
# script here, so that its text is sent once.
# shellcheck source-path=SCRIPTDIR source=guard-lib.sh
. ./guard-lib.sh
load_sets() {
  [ -s "$T/backup.load" ] || return 0
  ipset destroy fleetfw--swap 2>/dev/null || :
  ipset restore -exist <"$T/backup.load"
}
# Restore, record, retire: this process holds the revert (txn/reverter names it).
# FIRST=yes: the first runner (the tests pause it there, see fault_point).
run_revert() { # REASON FIRST
  if [ "$2" = yes ] && [ -e "$S/faults/pause-revert" ]; then
    : >"$S/faults/at-revert"
    _n=0
    while [ -e "$S/faults/pause-revert" ] && [ "$_n" -lt 600 ]; do sleep 0.1; _n=$((_n + 1)); done
  fi
  rc=0
  load_sets || rc=1
  iptables-restore <"$T/backup.v4" || rc=1
  ip6tables-restore <"$T/backup.v6" || rc=1
  # Sets this transaction created: nothing matches them any more.
  [ ! -s "$T/sets.created" ] || while read -r set; do ipset destroy "$set" 2>/dev/null || :; done <"$T/sets.created"
  if [ "$rc" = 0 ]; then result=reverted; else result=revert-failed; fi
  echo "$result: $1" >"$T/outcome" || rc=1
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $id $result $1" >>"$S/history.log" || rc=1
  retire || rc=1
  # The other guards have nothing left to do.
  T=$S/txns/$id
  stop_watchdog
  exit "$rc"
}
# Take the revert: txn/reverter says which process runs it, and why. Unwritten
# (state disk full), a guard takes it over 5 s on: restoring the same backup twice
# leaves the same rules.
take() { # REASON
  echo "$$ $1" >"$T/reverter" || echo "fleetfw revert: cannot record the runner of the revert of $id" >&2
}
# Another runner took the revert (or the confirm won): wait while it runs, and
# finish the revert if it dies. One taker only: mkdir is atomic.
supervise() {
  _n=0
  while :; do
    _i=
    { IFS= read -r _i <"$T/id"; } 2>/dev/null || :
    [ "$_i" = "$id" ] && [ -e "$T/reverting.$id" ] || exit 0
    _r=
    { IFS= read -r _r <"$T/reverter"; } 2>/dev/null || :
    if [ -n "$_r" ] && ours "${_r%% *}"; then _n=0
    elif [ -n "$_r" ] || [ "$_n" -ge 10 ]; then
      mkdir "$T/takeover" 2>/dev/null || exit 0
      [ -z "$_r" ] || reason=${_r#* }
      take "$reason"
      run_revert "$reason" no
    else _n=$((_n + 1)); fi
    sleep 0.5
  done
}
case "$mode" in
  guard|timer)
    # HUP, INT and TERM are already ignored by a guard (inherited from prepare).
    trap "" HUP INT TERM
    # Spared by the OOM killer, and so are its sleeps (children inherit it). Root only:
    # without it, the other guard is still there.
    { echo -1000 >/proc/self/oom_score_adj; } 2>/dev/null || echo "fleetfw revert: cannot set oom_score_adj" >&2
    if [ "$mode" = timer ]; then me=unit:fleetfw-revert-$id reason="no confirmation within the window"; else reason="no confirmation within ${3}s"; fi
    dl=
    { IFS= read -r dl <"$T/deadline"; } 2>/dev/null || :
    case "$dl" in ""|*[!0-9]*) dl=0 ;; esac
    # Until the deadline, by the time since boot. A killed sleep wakes this early:
    # the loop reads the clock again. At most a minute at a time, so that a guard
    # whose transaction ended without it ends too.
    while [ -e "$T/pending.$id" ]; do
      # No clock to read (never on Linux): the window, once, as a plain sleep would.
      uptime_cs || { [ "$mode" = timer ] || sleep "$3"; break; }
      left=$((dl - up))
      [ "$left" -gt 0 ] || break
      [ "$left" -le 6000 ] || left=6000
      sleep "$((left / 100)).$((left / 10 % 10))$((left % 10))"
    done
    # The one atomic step: whoever first renames the marker of this transaction decides.
    if mv "$T/pending.$id" "$T/reverting.$id" 2>/dev/null; then
      take "$reason"
      run_revert "$reason" yes
    fi
    supervise ;;
  now)
    mv "$T/pending.$id" "$T/reverting.$id" 2>/dev/null || exit 3
    take "$reason"
    run_revert "$reason" yes ;;
  finish)
    _r=
    { IFS= read -r _r <"$T/reverter"; } 2>/dev/null || :
    [ -z "$_r" ] || reason=${_r#* }
    [ -d "$T/takeover" ] || mkdir "$T/takeover" 2>/dev/null || :
    take "$reason"
    run_revert "$reason" no ;;
esac
exit 64
