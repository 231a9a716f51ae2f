# The time of day inside awk, as `date -u +%Y-%m-%dT%H:%M:%SZ` prints it: a date
# process fewer in prepare (its start) and in confirm (its time). srand() seeds from
# the time of day and returns the previous seed, so a second call returns the
# seconds since the epoch.
#   now_epoch()  the seconds since the epoch
#   iso(T)       T as an ISO 8601 UTC time
# Joined before the programs that call it (PREPARE_AWK, CONFIRM_AWK). Tested in
# programs.host.test.ts against `date -u -d @T` (leap days, centuries, 2038).
function now_epoch() { srand(); return srand() }
function iso(t,  d, s, z, era, doe, yoe, doy, mp, m) { # civil from days (H. Hinnant)
  d = int(t / 86400); s = t - d * 86400; z = d + 719468; era = int(z / 146097); doe = z - era * 146097
  yoe = int((doe - int(doe / 1460) + int(doe / 36524) - int(doe / 146096)) / 365)
  doy = doe - (365 * yoe + int(yoe / 4) - int(yoe / 100)); mp = int((5 * doy + 2) / 153); m = mp < 10 ? mp + 3 : mp - 9
  return sprintf("%04d-%02d-%02dT%02d:%02d:%02dZ", yoe + era * 400 + (m <= 2), m, doy - int((153 * mp + 2) / 5) + 1, int(s / 3600), int(s % 3600 / 60), s % 60) }
