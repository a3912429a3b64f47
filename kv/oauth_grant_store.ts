/**
 * OAuth grants in flight on Deno KV (domain/ports/oauth_grant_store.ts): codes, spent codes and
 * device authorizations, each written with `expireIn` and checked against `expiresAt` on read;
 * and the ID-token signing key, written once with a check that the key is absent.
 */
import { contentionError } from "./commit_retry.ts";
import { oauthKeys as keys } from "./schema.ts";
import type {
  AuthorizationCodeRecord,
  DeviceGrantRecord,
  OAuthGrantStore,
  SigningKeyStore,
  SpentCodeRecord,
} from "../domain/ports/oauth_grant_store.ts";

/** Optimistic commits retry this often (contention on one grant is a client racing itself). */
const MAX_ATTEMPTS = 20;

/**
 * Device authorizations stay in KV this long past their expiry, so a client polling late is
 * told `expired_token` (RFC 8628 §3.5) rather than that its code is unknown. Their user codes
 * stay taken as long.
 */
const DEVICE_GRANT_GRACE_MS = 3600_000;

/** The OAuthGrantStore and SigningKeyStore ports over one KV database. */
export class KvOAuthGrantStore implements OAuthGrantStore, SigningKeyStore {
  /** `now` decides expiry (injectable for tests). */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** See OAuthGrantStore.putCode. */
  async putCode(hash: string, record: AuthorizationCodeRecord): Promise<void> {
    await this.kv.set(keys.code(hash), record, { expireIn: this.#expireIn(record.expiresAt) });
  }

  /** See OAuthGrantStore.takeCode: the check on the code's versionstamp lets one taker win. */
  async takeCode(hash: string, spentUntil: number): Promise<AuthorizationCodeRecord | null> {
    const entry = await this.kv.get<AuthorizationCodeRecord>(keys.code(hash));
    if (!entry.value) return null;
    const spent: SpentCodeRecord = { clientId: entry.value.clientId, expiresAt: spentUntil };
    const { ok } = await this.kv.atomic()
      .check(entry)
      .delete(entry.key)
      .set(keys.spentCode(hash), spent, { expireIn: this.#expireIn(spentUntil) })
      .commit();
    return ok ? entry.value : null;
  }

  /** See OAuthGrantStore.getSpentCode. */
  async getSpentCode(hash: string): Promise<SpentCodeRecord | null> {
    const record = (await this.kv.get<SpentCodeRecord>(keys.spentCode(hash))).value;
    return record && record.expiresAt > this.now() ? record : null;
  }

  /** See OAuthGrantStore.updateSpentCode. */
  async updateSpentCode(
    hash: string,
    update: (current: SpentCodeRecord) => SpentCodeRecord,
  ): Promise<SpentCodeRecord | null> {
    const key = keys.spentCode(hash);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<SpentCodeRecord>(key);
      if (!entry.value) return null;
      const next = update(entry.value);
      const { ok } = await this.kv.atomic()
        .check(entry)
        .set(key, next, { expireIn: this.#expireIn(next.expiresAt) })
        .commit();
      if (ok) return next;
    }
    throw contentionError("updating a spent authorization code");
  }

  /** See OAuthGrantStore.createDeviceGrant: the user code key must be free. */
  async createDeviceGrant(deviceCodeHash: string, record: DeviceGrantRecord): Promise<boolean> {
    const expireIn = this.#expireIn(record.expiresAt + DEVICE_GRANT_GRACE_MS);
    const userCodeKey = keys.userCode(record.userCode);
    // An expired grant still holds its user code for the grace period: the check below then
    // fails, and the caller picks another code (8 letters: collisions are rare).
    const { ok } = await this.kv.atomic()
      .check({ key: userCodeKey, versionstamp: null })
      .check({ key: keys.deviceGrant(deviceCodeHash), versionstamp: null })
      .set(userCodeKey, deviceCodeHash, { expireIn })
      .set(keys.deviceGrant(deviceCodeHash), record, { expireIn })
      .commit();
    return ok;
  }

  /** See OAuthGrantStore.getDeviceGrant. */
  async getDeviceGrant(deviceCodeHash: string): Promise<DeviceGrantRecord | null> {
    const record = (await this.kv.get<DeviceGrantRecord>(keys.deviceGrant(deviceCodeHash)))
      .value;
    return record && record.expiresAt > this.now() ? record : null;
  }

  /** See OAuthGrantStore.deviceCodeHashFor. */
  async deviceCodeHashFor(userCode: string): Promise<string | null> {
    const hash = (await this.kv.get<string>(keys.userCode(userCode))).value;
    if (hash === null) return null;
    return (await this.getDeviceGrant(hash)) ? hash : null;
  }

  /** See OAuthGrantStore.updateDeviceGrant. */
  async updateDeviceGrant(
    deviceCodeHash: string,
    update: (current: DeviceGrantRecord) => DeviceGrantRecord | "delete" | null,
  ): Promise<DeviceGrantRecord | null> {
    const key = keys.deviceGrant(deviceCodeHash);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<DeviceGrantRecord>(key);
      if (!entry.value) return null;
      const next = update(entry.value);
      if (next === null) return entry.value;
      const op = this.kv.atomic().check(entry);
      if (next === "delete") {
        op.delete(key).delete(keys.userCode(entry.value.userCode));
      } else {
        op.set(key, next, { expireIn: this.#expireIn(next.expiresAt + DEVICE_GRANT_GRACE_MS) });
      }
      if ((await op.commit()).ok) return entry.value;
    }
    throw contentionError("updating a device authorization");
  }

  /** See SigningKeyStore.getOrCreate. */
  async getOrCreate(create: () => Promise<JsonWebKey>): Promise<JsonWebKey> {
    const key = keys.signingKey();
    const existing = (await this.kv.get<JsonWebKey>(key)).value;
    if (existing) return existing;
    const made = await create();
    const { ok } = await this.kv.atomic().check({ key, versionstamp: null }).set(key, made)
      .commit();
    if (ok) return made;
    // Another process stored its key first: use that one, so every process signs alike.
    const stored = (await this.kv.get<JsonWebKey>(key)).value;
    if (!stored) throw new Error("The ID-token signing key vanished after a lost create race");
    return stored;
  }

  #expireIn(expiresAt: number): number {
    return Math.max(1, expiresAt - this.now());
  }
}
