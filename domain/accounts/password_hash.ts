/**
 * Password hashing with scrypt (memory-hard): each hash records its own parameters, so the cost
 * can be raised later and old hashes still verify. Format: `scrypt$<logN>$<r>$<p>$<salt>$<key>`.
 */
import { scryptAsync } from "@noble/hashes/scrypt.js";
import { encodeBase64Unpadded, tryDecodeBase64 } from "../protocol/base64.ts";

/** scrypt cost parameters. */
export interface ScryptParams {
  /** log2 of the CPU/memory cost N; memory used is 128 * r * 2^logN bytes. */
  logN: number;
  r: number;
  p: number;
}

/**
 * The server's default: N = 2^15, r = 8, p = 1 (32 MiB per hash), 16-byte salt, 32-byte key.
 * One hash takes about 0.3-0.4 s with @noble/hashes on our machines.
 */
export const DEFAULT_SCRYPT_PARAMS: Readonly<ScryptParams> = Object.freeze({
  logN: 15,
  r: 8,
  p: 1,
});

const SALT_BYTES = 16;
const KEY_BYTES = 32;

/** Hashes and verifies passwords with fixed scrypt parameters. */
export class PasswordHasher {
  /** `params` defaults to the strong server setting; tests may pass a lower logN. */
  constructor(readonly params: Readonly<ScryptParams> = DEFAULT_SCRYPT_PARAMS) {}

  /** Hash a password with a fresh random salt. */
  async hash(password: string): Promise<string> {
    const { logN, r, p } = this.params;
    const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
    const key = await derive(password, salt, this.params);
    return `scrypt$${logN}$${r}$${p}$${encodeBase64Unpadded(salt)}$${encodeBase64Unpadded(key)}`;
  }

  #dummyHash?: string;

  /**
   * A stored hash with this hasher's parameters that no password matches (its key is all zero
   * bytes, which scrypt never yields in practice). Logins for unknown, deactivated or
   * passwordless users verify against it, so they cost what a wrong password costs and their
   * timing does not tell which accounts exist.
   */
  get dummyHash(): string {
    if (this.#dummyHash === undefined) {
      const { logN, r, p } = this.params;
      const salt = encodeBase64Unpadded(new TextEncoder().encode("tessera-dummy-ss"));
      const key = encodeBase64Unpadded(new Uint8Array(KEY_BYTES));
      this.#dummyHash = `scrypt$${logN}$${r}$${p}$${salt}$${key}`;
    }
    return this.#dummyHash;
  }

  /** Whether `password` matches `stored`; a malformed stored hash never matches. */
  async verify(password: string, stored: string): Promise<boolean> {
    const parts = stored.split("$");
    if (parts.length !== 6 || parts[0] !== "scrypt") return false;
    const [logN, r, p] = parts.slice(1, 4).map(Number);
    const salt = tryDecodeBase64(parts[4]);
    const expected = tryDecodeBase64(parts[5]);
    // Bounds keep a corrupted record from asking for gigabytes of memory.
    if (
      !salt || !expected || !(logN >= 1 && logN <= 20 && r >= 1 && r <= 32 && p >= 1 && p <= 16)
    ) {
      return false;
    }
    const key = await derive(password, salt, { logN, r, p }, expected.length);
    return constantTimeEqual(key, expected);
  }
}

function derive(
  password: string,
  salt: Uint8Array,
  { logN, r, p }: ScryptParams,
  dkLen = KEY_BYTES,
): Promise<Uint8Array> {
  // NFKC so the same password typed on different keyboards hashes the same.
  return scryptAsync(password.normalize("NFKC"), salt, { N: 2 ** logN, r, p, dkLen });
}

/** Compare without an early exit, so timing does not reveal how many bytes matched. */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
