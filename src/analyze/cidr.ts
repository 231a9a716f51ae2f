// CIDR arithmetic on canonical strings, printing addresses the way iptables-save
// does (glibc inet_ntop), so parsed rule sets compare textually with live dumps.
import ipaddr from 'ipaddr.js';
import { InternalError } from '../errors.js';
import type { Family } from '../model/inventory.js';

interface Net {
  family: Family;
  value: bigint;
  prefix: number;
}

const bitsOf = (family: Family): number => (family === 4 ? 32 : 128);

function toBigInt(bytes: number[]): bigint {
  return bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

function maskOf(family: Family, prefix: number): bigint {
  const bits = BigInt(bitsOf(family));
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(prefix))) - 1n);
}

// Analysis asks about the same few thousand addresses again and again (every
// rule of every host against every flow): each text is parsed once.
const parsed: Record<Family, Map<string, bigint | undefined>> = { 4: new Map(), 6: new Map() };

function parseAddress(text: string, family: Family): bigint | undefined {
  const memo = parsed[family];
  if (memo.has(text)) return memo.get(text);
  const value = parseAddressOnce(text, family);
  memo.set(text, value);
  return value;
}

function parseAddressOnce(text: string, family: Family): bigint | undefined {
  if (family === 4) {
    if (!ipaddr.IPv4.isValidFourPartDecimal(text)) return undefined;
    return toBigInt(ipaddr.IPv4.parse(text).toByteArray());
  }
  if (!text.includes(':') || !ipaddr.IPv6.isValid(text) || text.includes('%')) return undefined;
  return toBigInt(ipaddr.IPv6.parse(text).toByteArray());
}

/** `10.1.2.3/255.255.0.0`, `10.1.2.3/16`, `10.1.2.3`, `2001:db8::1/64` → network; string = error. */
function parseNet(text: string, family: Family): Net | string {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const maskText = slash < 0 ? undefined : text.slice(slash + 1);
  const value = parseAddress(addrText, family);
  if (value === undefined) {
    return /^[A-Za-z][A-Za-z0-9.-]*$/.test(addrText)
      ? `host names are not supported: ${addrText}`
      : `not an IPv${family} address: ${addrText}`;
  }
  let prefix = bitsOf(family);
  if (maskText !== undefined) {
    if (/^\d{1,3}$/.test(maskText) && Number(maskText) <= bitsOf(family)) {
      prefix = Number(maskText);
    } else {
      // iptables also takes a dotted netmask; only contiguous ones have a prefix form.
      const mask = family === 4 ? parseAddress(maskText, 4) : undefined;
      const len = mask === undefined ? -1 : contiguousPrefix(mask, family);
      if (len < 0) return `bad netmask: ${maskText}`;
      prefix = len;
    }
  }
  return { family, value: value & maskOf(family, prefix), prefix };
}

function contiguousPrefix(mask: bigint, family: Family): number {
  for (let p = 0; p <= bitsOf(family); p++) if (maskOf(family, p) === mask) return p;
  return -1;
}

/** glibc inet_ntop: longest zero run of >= 2 words compressed, embedded IPv4 for ::/96 and ::ffff:0:0/96. */
function formatAddress(value: bigint, family: Family): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.');
  }
  const words = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { base: -1, len: 0 };
  let cur = { base: -1, len: 0 };
  words.forEach((w, i) => {
    if (w === 0) {
      cur = cur.base < 0 ? { base: i, len: 1 } : { base: cur.base, len: cur.len + 1 };
      if (cur.len > best.len) best = { ...cur };
    } else {
      cur = { base: -1, len: 0 };
    }
  });
  if (best.len < 2) best = { base: -1, len: 0 };
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (best.base >= 0 && i >= best.base && i < best.base + best.len) {
      if (i === best.base) out += ':';
      continue;
    }
    if (i > 0) out += ':';
    if (i === 6 && best.base === 0 && (best.len === 6 || (best.len === 5 && words[5] === 0xffff))) {
      out += formatAddress(value & 0xffffffffn, 4);
      break;
    }
    out += (words[i] ?? 0).toString(16);
  }
  if (best.base >= 0 && best.base + best.len === 8) out += ':';
  return out;
}

const formatNet = (n: Net): string => `${formatAddress(n.value, n.family)}/${n.prefix}`;

/** Canonical CIDR (network address, explicit prefix) or an error message. */
export function canonicaliseCidr(text: string, family: Family): { cidr: string } | { error: string } {
  const net = parseNet(text, family);
  return typeof net === 'string' ? { error: net } : { cidr: formatNet(net) };
}

export function isValidAddress(text: string, family: Family): boolean {
  return parseAddress(text, family) !== undefined;
}

export function familyOf(text: string): Family | undefined {
  if (parseAddress(text.split('/')[0] ?? '', 4) !== undefined) return 4;
  if (parseAddress(text.split('/')[0] ?? '', 6) !== undefined) return 6;
  return undefined;
}

// cidrContains runs for every rule against every flow: each text is parsed, and its mask made, once.
const nets = new Map<string, Net & { mask: bigint }>();

function mustParse(text: string): Net & { mask: bigint } {
  let net = nets.get(text);
  if (net) return net;
  const family = familyOf(text);
  const parsedNet = family === undefined ? 'bad' : parseNet(text, family);
  // Rules reach here through parse.ts, which admits only canonical CIDRs: anything else is a bug.
  if (typeof parsedNet === 'string') throw new InternalError(`not a CIDR: ${text}`);
  nets.set(text, (net = { ...parsedNet, mask: maskOf(parsedNet.family, parsedNet.prefix) }));
  return net;
}

/** Is every address of `inner` (CIDR or address) inside `outer`? */
export function cidrContains(outer: string, inner: string): boolean {
  const o = mustParse(outer);
  const i = mustParse(inner);
  if (o.family !== i.family || i.prefix < o.prefix) return false;
  return (i.value & o.mask) === o.value;
}

/** Do two CIDRs share any address? */
export function cidrsOverlap(a: string, b: string): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

/** A representative host of a network: the first usable address (the address itself for /31, /32, /127, /128). */
export function pickFirstUsable(cidr: string): string {
  const n = mustParse(cidr);
  const hostBits = bitsOf(n.family) - n.prefix;
  return formatAddress(hostBits >= 2 ? n.value + 1n : n.value, n.family);
}

export function isWholeSpace(cidr: string): boolean {
  return cidr.endsWith('/0');
}

/** An address as a number (bigint), for interval arithmetic over classes of packets. */
export function addressValue(addr: string): bigint {
  return mustParse(addr).value;
}

/** The address a number stands for, printed as iptables-save prints it. */
export function addressOfValue(value: bigint, family: Family): string {
  return formatAddress(value, family);
}

/** First and last address of a CIDR (or an address), as numbers. */
export function cidrBounds(cidr: string): [bigint, bigint] {
  const n = mustParse(cidr);
  return [n.value, n.value | ((1n << BigInt(bitsOf(n.family) - n.prefix)) - 1n)];
}
