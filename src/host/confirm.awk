# The check of confirm, in the transaction dir d:
# - the live rules read (dump, into confirm.4, .6, .raw);
# - exit 1 unless their canonical text (confirm.canon) is that of the rules right
#   after the load (loaded.canon, whose hash the generation records; exit 5
#   without it);
# - the live sets of fleetfw that the candidate no longer has, into gone;
# - the time into confirmed_at;
# - the candidate into the generation g (its ipsets file only when it has sets).
# Exit 4: the live rules could not be read; 2: a write failed. Joined after
# TIME_AWK, CANON_AWK and DUMP_AWK; -v d, g, sets. Tested (accept and refuse) in
# programs.host.test.ts with stand-ins for the dump tools.
function copy(f,  l) { while ((getline l < (d "/" f)) > 0) print l > (g "/" f); close(d "/" f); close(g "/" f) }
BEGIN {
  if (!dump(d, "confirm", sets)) exit 4
  if ((getline l < (d "/loaded.canon")) <= 0) exit 5
  close(d "/loaded.canon")
  canon(d "/confirm.4", d "/confirm.6", d "/confirm.raw", d "/confirm.canon")
  if (!same_text(d "/confirm.canon", d "/loaded.canon")) exit 1
  while ((getline l < (d "/ipsets")) > 0) { split(l, w, " "); if (w[1] == "create") keep[w[2]] = 1 }
  close(d "/ipsets")
  printf "" > (d "/gone")
  while ((getline l < (d "/confirm.raw")) > 0) {
    split(l, w, " "); if (w[1] == "create" && w[2] ~ /^fleetfw-/ && !(w[2] in keep)) print w[2] > (d "/gone")
  }
  close(d "/gone")
  print iso(now_epoch()) > (d "/confirmed_at"); close(d "/confirmed_at")
  copy("rules.v4"); copy("rules.v6"); copy("ipsets")
  exit 0 }
