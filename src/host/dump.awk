# dump(D, P, SETS): the live rules into D/P.4, D/P.6 and D/P.raw (`ipset save`, with
# SETS=yes; empty without, or when it fails: no set table reads as none). Every write
# is checked: awk stops (exit 2) on a failed one, where iptables-save would cut its
# output short and still exit 0. One shell runs the three, each exit status after its
# output; that of the last is the exit status of the shell, which close returns
# (the shell execs it: a process fewer). Returns 0 when iptables-save or ip6tables-save failed (the reason on
# stderr), else 1. Used by dump_checked, PREPARE_AWK and CONFIRM_AWK; tested in
# programs.host.test.ts with stand-ins for the three tools.
function dump(d, p, sets,  cmd, l, out, rc, k, last) {
  cmd = "exec </dev/null; iptables-save; echo \"#fleetfw-rc $?\"; "
  cmd = cmd (sets == "yes" ? "ip6tables-save; echo \"#fleetfw-rc $?\"; exec ipset save 2>/dev/null" : "exec ip6tables-save")
  last = sets == "yes" ? 2 : 1
  out[0] = d "/" p ".4"; out[1] = d "/" p ".6"; out[2] = d "/" p ".raw"
  printf "" > out[0]; printf "" > out[1]; printf "" > out[2]
  k = 0
  while ((cmd | getline l) > 0) {
    if (l ~ /^#fleetfw-rc / && k < last) { rc[k++] = substr(l, 13); continue }
    print l > out[k]
  }
  rc[last] = close(cmd) ""
  if (k != last) rc[last] = "died"
  close(out[0]); close(out[1]); close(out[2])
  if (rc[2] != "0") { printf "" > out[2]; close(out[2]) }
  if (rc[0] == "0" && rc[1] == "0") return 1
  print "iptables-save or ip6tables-save failed (exit " rc[0] ", " rc[1] ")" > "/dev/stderr"
  return 0 }
