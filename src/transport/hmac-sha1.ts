// HMAC-SHA1 with its key's two pads hashed once. A hashed known_hosts line is found
// only by computing HMAC-SHA1(its salt, name) for each name looked up, so a fleet
// of N hosts against a file of M hashed lines costs N×M of them. With the pads
// hashed ahead, one costs two SHA-1 blocks for a host name, computed here in
// plain arithmetic: several times cheaper than a crypto HMAC object per call.

const IV = [0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476, 0xc3d2e1f0 | 0];
const W = new Int32Array(80);

/** One SHA-1 block (16 big-endian words from `block` at `at`) into the state. */
function compress(state: Int32Array, block: Int32Array, at: number): void {
  for (let i = 0; i < 16; i++) W[i] = block[at + i]!;
  for (let i = 16; i < 80; i++) {
    const x = W[i - 3]! ^ W[i - 8]! ^ W[i - 14]! ^ W[i - 16]!;
    W[i] = (x << 1) | (x >>> 31);
  }
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  let e = state[4]!;
  for (let i = 0; i < 80; i++) {
    let f: number;
    if (i < 20) f = ((b & c) | (~b & d)) + 0x5a827999;
    else if (i < 40) f = (b ^ c ^ d) + 0x6ed9eba1;
    else if (i < 60) f = ((b & c) | (b & d) | (c & d)) + (0x8f1bbcdc | 0);
    else f = (b ^ c ^ d) + (0xca62c1d6 | 0);
    const t = (((a << 5) | (a >>> 27)) + f + e + W[i]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = t;
  }
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
  state[4] = (state[4]! + e) | 0;
}

/** The message after `prefixBytes` already hashed, padded into whole blocks of words. */
function padded(msg: Uint8Array, prefixBytes: number): Int32Array {
  const blocks = Math.ceil((msg.length + 9) / 64);
  const words = new Int32Array(blocks * 16);
  for (let i = 0; i < msg.length; i++) words[i >> 2]! |= msg[i]! << (24 - 8 * (i & 3));
  words[msg.length >> 2]! |= 0x80 << (24 - 8 * (msg.length & 3));
  const bits = (prefixBytes + msg.length) * 8;
  words[words.length - 2] = Math.floor(bits / 2 ** 32);
  words[words.length - 1] = bits | 0;
  return words;
}

/** SHA-1 state after one block of the key XOR `x` (the key is at most 64 bytes). */
function padState(key: Uint8Array, x: number): Int32Array {
  const block = new Int32Array(16);
  for (let i = 0; i < 64; i++) block[i >> 2]! |= ((key[i] ?? 0) ^ x) << (24 - 8 * (i & 3));
  const state = Int32Array.from(IV);
  compress(state, block, 0);
  return state;
}

const inner = new Int32Array(5);
const outer = new Int32Array(5);
const outerBlock = new Int32Array(16);

/**
 * HMAC-SHA1 keyed by `key` (at most 64 bytes: known_hosts salts are 20), as a
 * function of the message; it returns the 20-byte MAC.
 */
export function hmacSha1(key: Uint8Array): (msg: Uint8Array) => Buffer {
  if (key.length > 64) throw new RangeError('hmacSha1: keys longer than a block are not supported');
  const ipad = padState(key, 0x36);
  const opad = padState(key, 0x5c);
  return (msg) => {
    inner.set(ipad);
    const words = padded(msg, 64);
    for (let at = 0; at < words.length; at += 16) compress(inner, words, at);
    outerBlock.fill(0);
    outerBlock.set(inner);
    outerBlock[5] = 0x80000000 | 0;
    outerBlock[15] = (64 + 20) * 8;
    outer.set(opad);
    compress(outer, outerBlock, 0);
    const out = Buffer.allocUnsafe(20);
    for (let i = 0; i < 5; i++) out.writeInt32BE(outer[i]!, i * 4);
    return out;
  };
}
