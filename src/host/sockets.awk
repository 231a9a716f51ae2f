# The listening sockets, read from /proc/net instead of starting `ss -ltnu`. Prints
# one line per socket, `NAME LOCAL`: NAME the file (tcp, tcp6, udp, udp6), LOCAL its
# local_address as the kernel prints it (`0100007F:0016`: the address as host-order
# 32-bit words in hex, the port in network order); fleetfw decodes them
# (parseProcSockets in listeners.ts, with the byte order of the host).
# TCP in state 0A (LISTEN), UDP in state 07 (unconnected: what `ss -lu` calls UNCONN).
# A missing file (no IPv6 on the host) is skipped. Run with LC_ALL=C.
#   proc_sockets(DIR)              the sockets of DIR/tcp, DIR/tcp6, DIR/udp, DIR/udp6
#   proc_sockets_of(DIR, NAME, ST) those of one file in state ST
# A busy host lists thousands of connections: a line is split only when " ST " is in
# it, which is only ever its state (the other fields are decimal, hex of 8 or 16
# digits, or hold a colon).
function proc_sockets(dir) {
  proc_sockets_of(dir, "tcp", "0A"); proc_sockets_of(dir, "tcp6", "0A")
  proc_sockets_of(dir, "udp", "07"); proc_sockets_of(dir, "udp6", "07") }
function proc_sockets_of(dir, name, st,  f, l, w, t) {
  f = dir "/" name; t = " " st " "
  if ((getline l <f) > 0) # the header line
    while ((getline l <f) > 0)
      if (index(l, t) && split(l, w, " ") > 3 && w[4] == st) print name " " w[2]
  close(f) }
