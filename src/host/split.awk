# split_candidate(D): the candidate on stdin, "v4 text, split line, v6 text[, split
# line, ipsets]", into rules.v4, rules.v6 and ipsets of D; the set lines also into
# cand[1..nc] and the tables, as "4 filter", into order[1..n]. The split lines come
# in split_line and sets_line (-v: SPLIT and SETS_SPLIT). Used by split_stdin (facts
# canonical) and PREPARE_AWK; tested in programs.host.test.ts.
function split_candidate(d,  l, out, fam) {
  out = d "/rules.v4"; printf "" > (d "/rules.v6"); printf "" > (d "/ipsets"); fam = 4
  while ((getline l < "/dev/stdin") > 0) {
    if (l == split_line) { out = d "/rules.v6"; fam = 6; continue }
    if (l == sets_line) { out = d "/ipsets"; fam = 0; continue }
    print l > out
    if (fam == 0) cand[++nc] = l; else if (l ~ /^\*/) order[++n] = fam " " substr(l, 2)
  } }
