# What "the same rules" means for hashes. canon(V4, V6, SETS, OUT) writes to OUT
# both dumps without comments, counters and empty tables (every chain a built-in one
# with policy ACCEPT, no rule: the same as no table, which a revert or an emptied
# table leaves and a boot does not), then the ipsets of fleetfw (fleetfw-*) from an
# `ipset save` file: create lines cut to name, type and family, every line sorted
# bytewise (a set lists its members in hash order). A missing file reads as empty;
# a host without sets of fleetfw hashes as it always did. Run with LC_ALL=C.
#   rules(F, OUT)                      one dump, as above
#   fleet_sets(F, A)                   the set lines of fleetfw in F, sorted, into A[1..n]; returns n
#   canon_sorted(V4, V6, A, N, OUT)    canon with the sets already in A (facts prints them too)
#   canon(V4, V6, SETS, OUT)
#   same_text(F1, F2)                  the same lines? A missing file is never the same
# Up to 500 set lines are sorted here (a heap sort), saving a `sort` process per
# dump: on this machine the canon of a dump takes 1.1 ms of CPU with 90 lines, 2.4 ms
# through `sort`. More go through `sort`, which is faster there (10,000 lines: 14 ms,
# 43 ms here). Both paths are tested (programs.host.test.ts), on either side of 500.
function rules(f, out,  l, held) { # a table is held back while it is still empty
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
function canon(v4, v6, sets, out,  a, n) { split("", a); n = fleet_sets(sets, a); canon_sorted(v4, v6, a, n, out) }
function same_text(f1, f2,  x, y, a, b) { # the same lines; a missing file is never the same
  while (1) {
    a = (getline x < f1); b = (getline y < f2)
    if (a <= 0 || b <= 0) { close(f1); close(f2); return a == 0 && b == 0 }
    if (x != y) { close(f1); close(f2); return 0 }
  } }
