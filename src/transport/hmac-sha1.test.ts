import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hmacSha1 } from './hmac-sha1.js';

describe('hmacSha1', () => {
  it('equals the crypto HMAC-SHA1 for every message length across block edges, keys of 0 to 64 bytes', () => {
    for (const keyLen of [0, 1, 20, 55, 63, 64]) {
      const key = randomBytes(keyLen);
      const mac = hmacSha1(key);
      for (let len = 0; len <= 200; len++) {
        const msg = randomBytes(len);
        expect(mac(msg).toString('hex'), `key ${keyLen}, message ${len}`).toBe(createHmac('sha1', key).update(msg).digest('hex'));
      }
    }
  });

  it('a known vector (RFC 2202 test case 2)', () => {
    expect(hmacSha1(Buffer.from('Jefe'))(Buffer.from('what do ya want for nothing?')).toString('hex')).toBe('effcdf6ae5eb2fa2d27416d5f184df9c259a7c79');
  });

  it('refuses a key longer than a block rather than computing something else', () => {
    expect(() => hmacSha1(randomBytes(65))).toThrow(RangeError);
  });
});
