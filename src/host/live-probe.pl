# verify --live on a host, in one process whatever the number of probes (perl-base
# is part of every Debian-family system). Run as `perl -e PROGRAM MODE ARGS`.
#
#   probe        stdin: lines `ID PROTO ADDR PORT TIMEOUT_MS` (PORT - for icmp);
#                prints `ID MS open|refused|unreachable|timeout`, `ID MS icmp HEX`
#                (the answer to an echo request, classified by fleetfw) or
#                `ID MS error WHY`, MS the milliseconds it took.
#                Every probe is a NEW connection (or datagram) from this host.
#   listen MAX   stdin: lines `ID PROTO ADDR PORT`, then `end`; prints `ID started`
#                (a listener of ours), `ID existing` (something listens there
#                already), `ID busy` (the port is used on another address only)
#                or `ID error WHY`, then `ready`. Then answers every connection
#                (accept and close) and datagram (echoed) until stdin ends or MAX
#                seconds pass, whichever is first: a dead fleetfw leaves nothing.
# Checked by fleetfw before it is sent and again here.
use strict;
use warnings;
use Socket qw(:all);
use Errno qw(EINPROGRESS ECONNREFUSED EHOSTUNREACH ENETUNREACH EPERM EACCES);
use Time::HiRes qw(time);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
$| = 1;
my $mode = shift @ARGV // "";

sub endpoint {
  my ($addr, $port) = @_;
  if ($addr =~ /:/) {
    my $p = inet_pton(AF_INET6, $addr);
    return $p ? (AF_INET6, pack_sockaddr_in6($port, $p)) : ();
  }
  my $p = inet_pton(AF_INET, $addr);
  return $p ? (AF_INET, pack_sockaddr_in($port, $p)) : ();
}

sub nonblocking { my $s = shift; fcntl($s, F_SETFL, fcntl($s, F_GETFL, 0) | O_NONBLOCK); }

sub verdict {
  my $e = shift;
  return "refused" if $e == ECONNREFUSED;
  return "unreachable" if $e == EHOSTUNREACH || $e == ENETUNREACH;
  # The own OUTPUT chain of the sender dropped it: still a silent drop.
  return "timeout" if $e == EPERM || $e == EACCES;
  return "error errno-" . ($e + 0);
}

sub checksum {
  my $d = shift;
  $d .= "\0" if length($d) % 2;
  my $s = 0;
  $s += $_ for unpack("n*", $d);
  $s = ($s & 0xffff) + ($s >> 16) while $s >> 16;
  return ~$s & 0xffff;
}

# The identifier of each echo request is the id of its probe: concurrent probes
# never take the answers of one another.
sub marker { my $id = shift; return pack("n n", $id & 0xffff, 1) . "fleetfw-probe"; }

sub icmp_answer {
  my ($e, $d) = @_;
  my $m = marker($e->{id});
  my $own = $e->{v6} ? 0 : (unpack("C", $d) & 15) * 4;
  for (my $p = index($d, $m); $p >= 0; $p = index($d, $m, $p + 1)) {
    # Our own request, seen when it goes over loopback, is not an answer.
    next if $p - 4 == $own && unpack("C", substr($d, $own, 1)) == ($e->{v6} ? 128 : 8);
    return "icmp " . unpack("H*", $d);
  }
  return undef;
}

sub start_probe {
  my ($id, $proto, $addr, $port, $ms) = @_;
  my ($fam, $sa) = endpoint($addr, $proto eq "icmp" ? 0 : $port);
  return "error bad-address" unless $sa;
  my $v6 = $fam == AF_INET6;
  my ($type, $pr) = $proto eq "tcp" ? (SOCK_STREAM, IPPROTO_TCP) : $proto eq "udp" ? (SOCK_DGRAM, IPPROTO_UDP) : (SOCK_RAW, $v6 ? 58 : 1);
  my $s;
  socket($s, $fam, $type, $pr) or return "error socket-" . ($! + 0);
  nonblocking($s);
  my $e = { id => $id, proto => $proto, s => $s, end => time + $ms / 1000, v6 => $v6 };
  if ($proto eq "icmp") {
    my $pkt = pack("C C n", $v6 ? 128 : 8, 0, 0) . marker($id);
    # The kernel fills in the ICMPv6 checksum itself.
    substr($pkt, 2, 2) = pack("n", checksum($pkt)) unless $v6;
    send($s, $pkt, 0, $sa) or return verdict($!);
    return $e;
  }
  if (!connect($s, $sa)) { return verdict($!) unless $! == EINPROGRESS; }
  if ($proto eq "udp") { send($s, "fleetfw-probe\n", 0) or return verdict($!); }
  return $e;
}

sub settle {
  my $e = shift;
  if ($e->{proto} eq "tcp") {
    my $err = unpack("i", getsockopt($e->{s}, SOL_SOCKET, SO_ERROR));
    return "open" unless $err;
    return verdict($err);
  }
  my $d = "";
  return verdict($! + 0) unless defined recv($e->{s}, $d, 65535, 0);
  return "open" if $e->{proto} eq "udp";
  return icmp_answer($e, $d);
}

sub probe {
  my @running;
  while (my $l = <STDIN>) {
    chomp $l;
    my ($id, $proto, $addr, $port, $ms) = split / /, $l;
    next unless defined $ms && $id =~ /^[0-9]+$/ && $ms =~ /^[0-9]+$/;
    if ($proto !~ /^(tcp|udp|icmp)$/ || $addr !~ /^[0-9a-fA-F.:]+$/ || ($proto ne "icmp" && $port !~ /^[0-9]+$/)) {
      print "$id 0 error bad-probe\n";
      next;
    }
    my $r = start_probe($id, $proto, $addr, $port, $ms);
    if (ref $r) { $r->{start} = time; push @running, $r; } else { print "$id 0 $r\n"; }
  }
  while (@running) {
    my ($rin, $win) = ("", "");
    my $next;
    for my $e (@running) {
      vec($e->{proto} eq "tcp" ? $win : $rin, fileno($e->{s}), 1) = 1;
      $next = $e->{end} if !defined $next || $e->{end} < $next;
    }
    my $wait = $next - time;
    select(my $rout = $rin, my $wout = $win, undef, $wait > 0 ? $wait : 0);
    my @left;
    for my $e (@running) {
      my $fd = fileno($e->{s});
      my $v;
      $v = settle($e) if vec($rout, $fd, 1) || vec($wout, $fd, 1);
      $v //= "timeout" if time >= $e->{end};
      if (defined $v) { printf "%s %d %s\n", $e->{id}, (time - $e->{start}) * 1000, $v; close $e->{s}; } else { push @left, $e; }
    }
    @running = @left;
  }
}

# Is something bound to PORT (tcp: listening; udp: unconnected) on ADDR or on a
# wildcard address? 2: yes; 1: on another address only; 0: no. Our own listeners
# (OURS: "proto hex port") do not count.
my %ours;
sub in_use {
  my ($proto, $addr, $port) = @_;
  my $want = unpack("H*", inet_pton($addr =~ /:/ ? AF_INET6 : AF_INET, $addr));
  my $found = 0;
  for my $f ("/proc/net/$proto", "/proc/net/${proto}6") {
    open(my $fh, "<", $f) or next;
    <$fh>;
    while (my $l = <$fh>) {
      my @c = split " ", $l;
      my ($a, $p) = split /:/, $c[1];
      next unless hex($p) == $port && $c[3] eq ($proto eq "tcp" ? "0A" : "07");
      # /proc prints each 32-bit word of an address as the host holds it in memory.
      my $hex = unpack("H*", pack("V*", map { hex } ($a =~ /(.{8})/g)));
      next if $ours{"$proto $hex $port"};
      return 2 if $hex =~ /^0+$/ || $hex eq $want || $hex eq "00000000000000000000ffff" . $want;
      $found = 1;
    }
  }
  return $found;
}

sub listen_all {
  my $max = shift // 0;
  $max =~ /^[0-9]+$/ && $max > 0 or die "listen MAX\n";
  alarm $max;
  my (@tcp, @udp);
  while (my $l = <STDIN>) {
    chomp $l;
    last if $l eq "end";
    my ($id, $proto, $addr, $port) = split / /, $l;
    next unless defined $port && $id =~ /^[0-9]+$/;
    if ($proto !~ /^(tcp|udp)$/ || $port !~ /^[0-9]+$/ || $port < 1 || $port > 65535) { print "$id error bad-listener\n"; next; }
    my ($fam, $sa) = endpoint($addr, $port);
    if (!$sa) { print "$id error bad-address\n"; next; }
    if ($ours{"$proto " . unpack("H*", inet_pton($fam, $addr)) . " $port"}) { print "$id started\n"; next; }
    my $use = in_use($proto, $addr, $port);
    if ($use) { print "$id ", ($use == 2 ? "existing" : "busy"), "\n"; next; }
    my $s;
    if (!socket($s, $fam, $proto eq "tcp" ? SOCK_STREAM : SOCK_DGRAM, 0)) { print "$id error socket-", $! + 0, "\n"; next; }
    setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1);
    setsockopt($s, IPPROTO_IPV6, IPV6_V6ONLY, 1) if $fam == AF_INET6;
    if (!bind($s, $sa) || ($proto eq "tcp" && !listen($s, 128))) { print "$id error bind-", $! + 0, "\n"; next; }
    nonblocking($s);
    $ours{"$proto " . unpack("H*", inet_pton($fam, $addr)) . " $port"} = 1;
    push @{ $proto eq "tcp" ? \@tcp : \@udp }, $s;
    print "$id started\n";
  }
  print "ready\n";
  my $rin = "";
  vec($rin, fileno(STDIN), 1) = 1;
  vec($rin, fileno($_), 1) = 1 for @tcp, @udp;
  while (1) {
    select(my $rout = $rin, undef, undef, undef) > 0 or next;
    if (vec($rout, fileno(STDIN), 1)) {
      my $got = sysread(STDIN, my $buf, 4096);
      last unless $got;
    }
    for my $s (@tcp) {
      next unless vec($rout, fileno($s), 1);
      my $c;
      close $c if accept($c, $s);
    }
    for my $s (@udp) {
      next unless vec($rout, fileno($s), 1);
      my $from = recv($s, my $d, 65535, 0);
      send($s, $d, 0, $from) if defined $from && length $from;
    }
  }
  print "stopped\n";
}

if ($mode eq "probe") { probe(); }
elsif ($mode eq "listen") { listen_all(@ARGV); }
else { die "usage: probe | listen MAX\n"; }
