# prepare in one pass, from the candidate on stdin and the live dumps now.raw, now.4,
# now.6 (the arguments, in that order) in the transaction dir d:
# - the candidate split into rules.v4, rules.v6 and ipsets (split_candidate);
# - backups that really restore, backup.v4 and backup.v6: every table the candidate
#   replaces is in them, so a table that did not exist before is reset to empty,
#   policies ACCEPT;
# - for the sets: the candidate sets that do not exist yet, created and filled
#   (sets.new; no rule matches them before the load) and listed (sets.created), and
#   two loads for `ipset restore -exist`, the other candidate sets (sets.load) and
#   the live fleetfw sets (backup.load): each set made sure to exist, filled as a
#   temporary one, then swapped in;
# - with stale=yes, the canonical text of the live rules (now.canon) for the stale
#   check, compared here with expect_canon when given (exit 3 when they differ);
# - the start of the transaction (started, ISO).
# The live dumps are taken first (dump: exit 4 when they cannot be read, 2 when a
# write fails); an unknown table exits 6. Joined after TIME_AWK, CANON_AWK,
# DUMP_AWK and SPLIT_AWK; -v d, split_line, sets_line, stale, expect_canon, sets.
# Tested in programs.host.test.ts with stand-ins for the dump tools.
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
  if (!dump(d, "now", sets)) { dead = 4; exit 4 }
  print iso(now_epoch()) > (d "/started")
  load = d "/sets.load"; printf "" > (d "/backup.load"); printf "" > (d "/sets.new"); printf "" > (d "/sets.created"); printf "" > load
  split_candidate(d)
}
FILENAME == d "/now.raw" {
  if ($1 == "create") { have[$2] = 1; if ($2 == "fleetfw--swap") print "destroy fleetfw--swap" > load }
  if (($1 == "create" || $1 == "add") && $2 ~ /^fleetfw-/ && $2 != "fleetfw--swap") swap_in(d "/backup.load")
  next }
{ fam = FILENAME == d "/now.4" ? 4 : 6; print > (d "/backup.v" fam); if (/^\*/) tab[fam, substr($0, 2)] = 1 }
END {
  if (dead) exit dead
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
    c = chains(f[2]); if (c == "") { print "unknown table " f[2] > "/dev/stderr"; exit 6 }
    out = d "/backup.v" f[1]
    print "*" f[2] > out; k = split(c, cs, " "); for (j = 1; j <= k; j++) print ":" cs[j] " ACCEPT [0:0]" > out; print "COMMIT" > out
    tab[f[1], f[2]] = 1
  }
  if (stale != "yes") exit 0
  c = d "/now.canon"
  canon(d "/now.4", d "/now.6", d "/now.raw", c)
  if (expect_canon != "" && !same_text(c, expect_canon)) exit 3
}
