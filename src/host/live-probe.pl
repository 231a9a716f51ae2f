# verify --live on a host, in one process whatever the number of probes. Only
# modules of perl-base (part of every Debian-family system). Run as
# `perl -e PROGRAM MODE ARGS`.
#
#   probe        stdin: lines `ID PROTO ADDR PORT TIMEOUT_MS` (PORT - for icmp);
#                prints `ID MS open|refused|unreachable|timeout`, `ID MS icmp SEQ HEX`
#                (the answer to an echo request, classified by fleetfw) or
#                `ID MS error WHY`, MS the milliseconds it took. Every probe is a
#                NEW connection (or datagram) from this host; at most 256 at once.
#   listen MAX   stdin: lines `ID PROTO ADDR PORT`, then `end`; prints `ID started`
#                (a listener of ours), `ID existing` (a socket of the host listens
#                there: the kernel refused our bind), `ID busy` (the port is bound
#                on another address only) or `ID error WHY`, then `ready`. Then
#                answers every connection (accept and close) and datagram (echoed)
#                until stdin ends or MAX seconds pass, whichever is first: a dead
#                fleetfw leaves nothing.
# Checked by fleetfw before it is sent and again here.
use strict;
use warnings;
use Socket qw(:all);
use Errno qw(EINPROGRESS ECONNREFUSED EHOSTUNREACH ENETUNREACH EPERM EACCES EADDRINUSE);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
$| = 1;
my $mode = shift @ARGV // "";
my $AT_ONCE = 256;

# Elapsed seconds, fractions included, from what select says it left of each
# wait (perl-base has no finer clock than whole seconds).
my $clock = 0;
sub wait_for {
  my ($rin, $win, $secs) = @_;
  my ($n, $left) = select(my $rout = $rin, my $wout = $win, undef, $secs);
  $clock += $secs - ($left // 0) if defined $secs;
  return ($n, $rout, $wout);
}

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

# The identifier of each echo request is the id of its probe and its sequence a
# number drawn per run: neither a concurrent probe nor another run takes its answer.
my $SEQ = 1 + int(rand(65535));
sub marker { my $id = shift; return pack("n n", $id & 0xffff, $SEQ) . "fleetfw-probe"; }

# An answer: an echo reply from the destination, or an ICMP error quoting our request.
sub icmp_answer {
  my ($e, $d, $from) = @_;
  my $m = marker($e->{id});
  my $hdr = $e->{v6} ? 0 : (unpack("C", $d) & 15) * 4;
  return undef if length($d) < $hdr + 8;
  my $type = unpack("C", substr($d, $hdr, 1));
  if ($type == ($e->{v6} ? 129 : 0)) {
    return undef unless substr($d, $hdr + 4, length $m) eq $m && defined $from && $from eq $e->{peer};
  } elsif ($type == ($e->{v6} ? 1 : 3)) {
    return undef if index($d, $m, $hdr + 8) < 0;
  } else {
    return undef;
  }
  return "icmp $SEQ " . unpack("H*", $d);
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
  my $e = { id => $id, proto => $proto, s => $s, start => $clock, end => $clock + $ms / 1000, v6 => $v6, peer => inet_pton($fam, $addr) };
  if ($proto eq "icmp") {
    my $pkt = pack("C C n", $v6 ? 128 : 8, 0, 0) . marker($id);
    # The kernel fills in the ICMPv6 checksum itself.
    substr($pkt, 2, 2) = pack("n", checksum($pkt)) unless $v6;
    send($s, $pkt, 0, $sa) or return local_failure($!);
    return $e;
  }
  if (!connect($s, $sa)) { return local_failure($!) unless $! == EINPROGRESS; }
  if ($proto eq "udp") { send($s, "fleetfw-probe\n", 0) or return local_failure($!); }
  return $e;
}

# Refused before any packet left: no route from here proves nothing of the destination.
sub local_failure {
  my $e = shift;
  return "error no-route-from-here" if $e == ENETUNREACH || $e == EHOSTUNREACH;
  return verdict($e);
}

sub settle {
  my $e = shift;
  if ($e->{proto} eq "tcp") {
    my $err = unpack("i", getsockopt($e->{s}, SOL_SOCKET, SO_ERROR));
    return "open" unless $err;
    return verdict($err);
  }
  my $d = "";
  my $from = recv($e->{s}, $d, 65535, 0);
  return verdict($! + 0) unless defined $from;
  return "open" if $e->{proto} eq "udp";
  my $peer;
  if (length $from) {
    $peer = $e->{v6} ? (unpack_sockaddr_in6($from))[1] : (unpack_sockaddr_in($from))[1];
  }
  return icmp_answer($e, $d, $peer);
}

sub probe {
  my (@queue, @running);
  while (my $l = <STDIN>) {
    chomp $l;
    my ($id, $proto, $addr, $port, $ms) = split / /, $l;
    next unless defined $ms && $id =~ /^[0-9]+$/ && $ms =~ /^[0-9]+$/;
    if ($proto !~ /^(tcp|udp|icmp)$/ || $addr !~ /^[0-9a-fA-F.:]+$/ || ($proto ne "icmp" && $port !~ /^[0-9]+$/)) {
      print "$id 0 error bad-probe\n";
      next;
    }
    push @queue, [$id, $proto, $addr, $port, $ms];
  }
  while (@queue || @running) {
    while (@queue && @running < $AT_ONCE) {
      my $q = shift @queue;
      my $r = start_probe(@$q);
      if (ref $r) { push @running, $r; } else { print "$q->[0] 0 $r\n"; }
    }
    last unless @running;
    my ($rin, $win) = ("", "");
    my $next;
    for my $e (@running) {
      vec($e->{proto} eq "tcp" ? $win : $rin, fileno($e->{s}), 1) = 1;
      $next = $e->{end} if !defined $next || $e->{end} < $next;
    }
    my $wait = $next - $clock;
    my (undef, $rout, $wout) = wait_for($rin, $win, $wait > 0 ? $wait : 0);
    my @left;
    for my $e (@running) {
      my $fd = fileno($e->{s});
      my $v;
      $v = settle($e) if vec($rout, $fd, 1) || vec($wout, $fd, 1);
      $v //= "timeout" if $clock >= $e->{end};
      if (defined $v) { printf "%s %d %s\n", $e->{id}, ($clock - $e->{start}) * 1000, $v; close $e->{s}; } else { push @left, $e; }
    }
    @running = @left;
  }
}

# Is PORT (tcp: listening; udp: bound) in use on an address other than ADDR and
# the wildcards, by a socket that is not ours (OURS: "proto hex port")?
my %ours;
sub bound_elsewhere {
  my ($proto, $port) = @_;
  for my $f ("/proc/net/$proto", "/proc/net/${proto}6") {
    open(my $fh, "<", $f) or next;
    <$fh>;
    while (my $l = <$fh>) {
      my @c = split " ", $l;
      my ($a, $p) = split /:/, $c[1];
      next unless hex($p) == $port && $c[3] eq ($proto eq "tcp" ? "0A" : "07");
      # /proc prints each 32-bit word of an address as the host holds it in memory.
      my $hex = unpack("H*", pack("L*", map { hex } ($a =~ /(.{8})/g)));
      return 1 unless $ours{"$proto $hex $port"};
    }
  }
  return 0;
}

# The kernel decides whether something covers ADDR:PORT (a wildcard of either
# family, dual-stack or not, or the address itself): our bind fails if so. TCP
# binds with SO_REUSEADDR, which only a listening socket refuses (an old
# connection of ours waiting out its close does not); UDP without it, so that
# a service of the host never shares its port with us.
sub listen_one {
  my ($id, $proto, $addr, $port) = @_;
  my ($fam, $sa) = endpoint($addr, $port);
  return "error bad-address" unless $sa;
  my $key = "$proto " . unpack("H*", inet_pton($fam, $addr)) . " $port";
  return "started" if $ours{$key};
  my $s;
  socket($s, $fam, $proto eq "tcp" ? SOCK_STREAM : SOCK_DGRAM, 0) or return "error socket-" . ($! + 0);
  setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) if $proto eq "tcp";
  setsockopt($s, IPPROTO_IPV6, IPV6_V6ONLY, 1) if $fam == AF_INET6;
  if (!bind($s, $sa)) { return $! == EADDRINUSE ? "existing" : "error bind-" . ($! + 0); }
  # Ours from here on (a bound UDP socket shows in /proc at once).
  $ours{$key} = $s;
  if (bound_elsewhere($proto, $port)) { delete $ours{$key}; close $s; return "busy"; }
  if ($proto eq "tcp" && !listen($s, 128)) { delete $ours{$key}; return "error listen-" . ($! + 0); }
  nonblocking($s);
  return "started";
}

sub listen_all {
  my $max = shift // 0;
  $max =~ /^[0-9]+$/ && $max > 0 or die "listen MAX\n";
  alarm $max;
  while (my $l = <STDIN>) {
    chomp $l;
    last if $l eq "end";
    my ($id, $proto, $addr, $port) = split / /, $l;
    next unless defined $port && $id =~ /^[0-9]+$/;
    if ($proto !~ /^(tcp|udp)$/ || $port !~ /^[0-9]+$/ || $port < 1 || $port > 65535) { print "$id error bad-listener\n"; next; }
    print "$id ", listen_one($id, $proto, $addr, $port), "\n";
  }
  print "ready\n";
  my (@tcp, @udp);
  for my $k (keys %ours) { push @{ $k =~ /^tcp / ? \@tcp : \@udp }, $ours{$k}; }
  my $rin = "";
  vec($rin, fileno(STDIN), 1) = 1;
  vec($rin, fileno($_), 1) = 1 for @tcp, @udp;
  while (1) {
    my ($n, $rout) = wait_for($rin, "", undef);
    next unless $n && $n > 0;
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
