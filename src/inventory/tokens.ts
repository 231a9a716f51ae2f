// Typed token checks for every inventory value that may reach an iptables rule
// or a shell command line. Each check returns the canonical value or a reason
// that already quotes the offending input, so callers print it as is.
import ipaddr from 'ipaddr.js';
import type { Family } from '../model/inventory.js';

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

export interface Cidr {
  family: Family;
  /** Canonical network address. */
  address: string;
  prefix: number;
  /** Canonical `address/prefix`. */
  cidr: string;
}

const ok = <T>(value: T): Checked<T> => ({ ok: true, value });
const fail = <T>(reason: string): Checked<T> => ({ ok: false, reason });

/**
 * Quote user text for a one-line message: JSON escapes plus every non-ASCII or
 * control character as \uXXXX (U+2028, U+202E… must not reach a terminal raw),
 * cut after 48 characters.
 */
export function quote(s: string): string {
  const cut = s.length > 48 ? `${s.slice(0, 48)}...` : s;
  const body = JSON.stringify(cut).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return s.length > 48 ? `${body} (${s.length} characters)` : body;
}

/** Strict dotted quad: no leading zeros (octal ambiguity), no short forms. */
export function parseIPv4(s: string): Checked<string> {
  if (/^[0-9.]{7,15}$/.test(s) && ipaddr.IPv4.isValidFourPartDecimal(s)) {
    return ok(ipaddr.IPv4.parse(s).toString());
  }
  if (isIPv6Syntax(s)) return fail(`${quote(s)} is an IPv6 address, expected IPv4`);
  return fail(`${quote(s)} is not an IPv4 address`);
}

/** Any RFC 4291 text form except zone ids; canonical = RFC 5952 (compressed, lower case). */
export function parseIPv6(s: string): Checked<string> {
  if (isIPv6Syntax(s)) return ok(ipaddr.IPv6.parse(s).toRFC5952String());
  if (/^[0-9.]+$/.test(s) && ipaddr.IPv4.isValidFourPartDecimal(s)) {
    return fail(`${quote(s)} is an IPv4 address, expected IPv6`);
  }
  return fail(`${quote(s)} is not an IPv6 address`);
}

function isIPv6Syntax(s: string): boolean {
  return /^[0-9A-Fa-f:.]{2,45}$/.test(s) && s.includes(':') && ipaddr.IPv6.isValid(s);
}

/** An address of either family. */
export function parseAddress(s: string, family?: Family): Checked<{ family: Family; address: string }> {
  if (family !== 6) {
    const v4 = parseIPv4(s);
    if (v4.ok || family === 4) return v4.ok ? ok({ family: 4, address: v4.value }) : fail(v4.reason);
  }
  const v6 = parseIPv6(s);
  if (v6.ok) return ok({ family: 6, address: v6.value });
  return fail(family === 6 ? v6.reason : `${quote(s)} is not an IP address`);
}

/**
 * `address/prefix` in canonical form. Host bits must be zero (a set host bit is
 * almost always a typo). A bare address is accepted as /32 or /128 only with `allowBare`.
 */
export function parseCidr(s: string, family?: Family, allowBare = false): Checked<Cidr> {
  const slash = s.indexOf('/');
  const addrText = slash < 0 ? s : s.slice(0, slash);
  const prefixText = slash < 0 ? undefined : s.slice(slash + 1);
  if (prefixText === undefined && !allowBare) return fail(`${quote(s)} is not a CIDR (expected address/prefix)`);
  const addr = parseAddress(addrText, family);
  if (!addr.ok) return fail(`${quote(s)} is not a valid CIDR: ${addr.reason}`);
  const max = addr.value.family === 4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > max) {
      return fail(`${quote(s)} has an invalid prefix length (expected 0-${max})`);
    }
    prefix = Number(prefixText);
  }
  const network = (addr.value.family === 4 ? ipaddr.IPv4 : ipaddr.IPv6).networkAddressFromCIDR(
    `${addr.value.address}/${prefix}`,
  );
  const address = network.kind() === 'ipv6' ? (network as ipaddr.IPv6).toRFC5952String() : network.toString();
  const cidr = `${address}/${prefix}`;
  if (address !== addr.value.address) return fail(`${quote(s)} has host bits set (did you mean ${cidr}?)`);
  return ok({ family: addr.value.family, address, prefix, cidr });
}

const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export function isHostName(s: string): Checked<string> {
  if (!HOST_NAME.test(s) || s.includes('..')) {
    return fail(`${quote(s)} is not a valid host name (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit, no "..")`);
  }
  return ok(s);
}

/** Linux IFNAMSIZ rules; the iptables wildcard `+` is refused: the inventory names real interfaces. */
export function isInterfaceName(s: string): Checked<string> {
  if (s.endsWith('+') && s.length > 1) return fail(`${quote(s)}: interface wildcards ("+") are not allowed`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(s) || s.startsWith('-') || s === '.' || s === '..') {
    return fail(`${quote(s)} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -, not starting with "-")`);
  }
  return ok(s);
}

/** Groups and roles name template files and appear in `group.<g>.<field>`, hence no dots. */
export function isGroupName(s: string): Checked<string> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,27}$/.test(s)) {
    return fail(`${quote(s)} is not a valid name (1-28 of A-Z a-z 0-9 _ -, starting with a letter or digit)`);
  }
  return ok(s);
}

export function isPort(n: number | string): Checked<number> {
  const v = typeof n === 'number' ? n : /^[0-9]{1,5}$/.test(n) ? Number(n) : NaN;
  if (!Number.isInteger(v) || v < 1 || v > 65535) {
    return fail(Number.isInteger(v) ? `port must be 1-65535, got ${v}` : `${quote(String(n))} is not a port (expected an integer 1-65535)`);
  }
  return ok(v);
}

/** iptables `--dport a:b` with a <= b. */
export function isPortRange(s: string): Checked<[number, number]> {
  const m = /^([0-9]{1,5}):([0-9]{1,5})$/.exec(s);
  const lo = m && isPort(m[1]!);
  const hi = m && isPort(m[2]!);
  if (!lo?.ok || !hi?.ok || lo.value > hi.value) {
    return fail(`${quote(s)} is not a port range (expected a:b with 1 <= a <= b <= 65535)`);
  }
  return ok([lo.value, hi.value]);
}

const VAR_WORD = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$/;
/**
 * A var value lands verbatim in rules: it must be an address, CIDR or a shell-
 * and iptables-inert word (ports, ranges, interface names, zone names...).
 * Addresses and CIDRs come back canonical.
 */
export function isVarToken(s: string): Checked<string> {
  const addr = parseAddress(s);
  if (addr.ok) return ok(addr.value.address);
  const cidr = parseCidr(s);
  if (cidr.ok) return ok(cidr.value.cidr);
  if (VAR_WORD.test(s) || isInterfaceName(s).ok) return ok(s);
  return fail(
    `${quote(s)} is not a valid value (an address, CIDR, port, port range, interface name or word of A-Z a-z 0-9 _ . : / -, at most 64 characters)`,
  );
}

export function isVarName(s: string): Checked<string> {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(s)) {
    return fail(`${quote(s)} is not a valid var name (1-64 of A-Z a-z 0-9 _, not starting with a digit)`);
  }
  return ok(s);
}

/** Preserved foreign chains: iptables chain names (<= 28) with `*` wildcards. */
export function isChainPattern(s: string): Checked<string> {
  if (!/^[A-Za-z0-9_.+*-]{1,28}$/.test(s)) {
    return fail(`${quote(s)} is not a valid chain pattern (1-28 of A-Z a-z 0-9 _ . + * -)`);
  }
  return ok(s);
}

/** Login names as useradd accepts them. */
export function isUserName(s: string): Checked<string> {
  if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(s)) {
    return fail(`${quote(s)} is not a valid user name (1-32 of A-Z a-z 0-9 _ . -, not starting with a digit, "." or "-")`);
  }
  return ok(s);
}

/** A local file path (known_hosts, identity): any printable text; `~/` is expanded at use. */
export function isLocalPath(s: string): Checked<string> {
  // eslint-disable-next-line no-control-regex -- control characters are what this check refuses
  if (s.length === 0 || s.length > 4096 || /[\0-\x1f\x7f]/.test(s)) {
    return fail(`${quote(s)} is not a usable file path`);
  }
  return ok(s);
}
