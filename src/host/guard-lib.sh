# shellcheck shell=sh
# Shared by the host script and the revert script (revert.sh), defined once: the
# host script evals it (GUARD_LIB), and splices it into the revert script it writes (REVERT_SH).
#  uptime_cs       the time since boot, in centiseconds, into up (1: unreadable);
#  ours PID        is PID a live process of transaction $id? A recorded pid may be
#                  that of another process by now (killed, then reused): only a
#                  process whose command line names the transaction is ours (that of
#                  a zombie is empty);
#  stop_watchdog   end every guard of transaction $id but this process ($me). A guard
#                  leads its own process group, so its sleep goes with it (no `--`:
#                  dash takes it for a pid);
#  retire          move transaction $id out of the lock into txns/, name it in last_txn.
# Reads S, T, UPTIME_FILE, id and me, set by the script that runs it; up is for it.
# shellcheck disable=SC2034,SC2154 # up: read by the caller; id, me: set by the caller
uptime_cs() {
  _u="" up=0
  { IFS=" " read -r _u _ <"$UPTIME_FILE"; } 2>/dev/null || :
  case "$_u" in [0-9]*.[0-9][0-9]*) ;; *) return 1 ;; esac
  _f=${_u#*.}
  _u=${_u%%.*}${_f%"${_f#??}"}
  case "$_u" in *[!0-9]*) return 1 ;; esac
  while [ "${#_u}" -gt 1 ] && [ "${_u#0}" != "$_u" ]; do _u=${_u#0}; done
  up=$_u
}
ours() {
  [ -n "$id" ] && [ -n "$1" ] || return 1
  _c=
  { IFS= read -r _c <"/proc/$1/cmdline"; } 2>/dev/null || :
  case "$_c" in *"$id"*) return 0 ;; esac
  return 1
}
stop_watchdog() {
  _w=
  { [ ! -r "$T/watchdog" ] || IFS= read -r _w <"$T/watchdog"; } 2>/dev/null || :
  for _g in $_w; do
    [ "$_g" != "$me" ] || continue
    case "$_g" in
      pid:*) if ours "${_g#pid:}"; then kill -KILL "-${_g#pid:}" 2>/dev/null || :; fi ;;
      unit:*) systemctl stop "${_g#unit:}.timer" "${_g#unit:}.service" >/dev/null 2>&1 || : ;;
    esac
  done
}
retire() {
  { [ -d "$S/txns" ] || mkdir -p "$S/txns"; } && { [ ! -e "$S/txns/$id" ] || rm -rf "$S/txns/$id"; } \
    && mv "$T" "$S/txns/$id" && echo "$id" >"$S/last_txn"
}
