/**
 * Accounts, devices and token hashes on Deno KV. A device record names its current token
 * hashes, so replacing or revoking a device's tokens is one atomic commit guarded by the device
 * record's versionstamp. A user's dehydrated device (MSC3814) is a device record without tokens
 * plus the user's `dehydratedDevice` entry; both are written and deleted in one commit.
 */
import { contentionError } from "./commit_retry.ts";
import { getManyChunked } from "./get_many.ts";
import { accountKeys as keys, e2eeKeys, oauthKeys } from "./schema.ts";
import type { JsonObject } from "../domain/protocol/json.ts";
import type {
  AccessTokenRecord,
  AccountRecord,
  AccountStore,
  DehydratedDeviceCreation,
  DehydratedDeviceRecord,
  DeviceRecord,
  IssuedTokens,
  LoginTokenRecord,
  RefreshTokenRecord,
  SpentRefreshRecord,
  UiaSessionRecord,
} from "../domain/ports/account_store.ts";

/** Optimistic commits retry this often before giving up (contention on one device is rare). */
const MAX_ATTEMPTS = 20;
/**
 * Devices whose tokens the deactivation commit revokes itself: two deletes each, within KV's
 * 1,000 mutations and 80 KiB of keys per commit. The follow-up logout revokes any beyond.
 */
const TOKENS_REVOKED_WITH_DEACTIVATION = 200;

/** Stored dehydrated device: `device_data` as UTF-8 JSON, so its size is what was checked. */
interface StoredDehydratedDevice {
  deviceId: string;
  deviceData: Uint8Array;
}

/** The AccountStore port over one KV database. */
export class KvAccountStore implements AccountStore {
  /** `now` sets expiry of UIA sessions and login tokens. */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** Read an account. */
  async getAccount(userId: string): Promise<AccountRecord | null> {
    return (await this.kv.get<AccountRecord>(keys.account(userId))).value;
  }

  /** See AccountStore.erasedAmong: the account records, ten to a read. */
  async erasedAmong(userIds: readonly string[]): Promise<Set<string>> {
    const ids = [...new Set(userIds)];
    const entries = await getManyChunked<AccountRecord>(this.kv, ids.map((u) => keys.account(u)));
    return new Set(
      ids.filter((_, i) => entries[i].value?.deactivated === true && entries[i].value?.erase),
    );
  }

  /** Create an account (and its first device); false when the user ID is taken. */
  async createAccount(
    account: AccountRecord,
    device?: DeviceRecord,
    tokens?: IssuedTokens,
  ): Promise<boolean> {
    const op = this.kv.atomic()
      .check({ key: keys.account(account.userId), versionstamp: null })
      .set(keys.account(account.userId), account);
    if (device) {
      op.set(keys.device(device.userId, device.deviceId), device);
      if (tokens) this.setTokens(op, tokens);
    }
    return (await op.commit()).ok;
  }

  /** See AccountStore.replaceAccount: the stored record must equal `before` (compared as JSON). */
  async replaceAccount(
    before: AccountRecord,
    after: AccountRecord,
    device?: DeviceRecord,
    tokens?: IssuedTokens,
  ): Promise<boolean> {
    const entry = await this.kv.get<AccountRecord>(keys.account(before.userId));
    if (JSON.stringify(entry.value) !== JSON.stringify(before)) return false;
    const op = this.kv.atomic().check(entry).set(entry.key, after);
    if (device) {
      const deviceKey = keys.device(device.userId, device.deviceId);
      op.check({ key: deviceKey, versionstamp: null }).set(deviceKey, device);
      if (tokens) this.setTokens(op, tokens);
    }
    return (await op.commit()).ok;
  }

  /** Overwrite an account record. */
  async putAccount(account: AccountRecord): Promise<void> {
    await this.kv.set(keys.account(account.userId), account);
  }

  /**
   * See AccountStore.markDeactivated. The access and refresh tokens of the account's devices
   * (the first TOKENS_REVOKED_WITH_DEACTIVATION of them) go in the same commit: the account stops
   * working in every process at once, even when the process dies before the follow-up logout
   * (the leased resumption may come minutes later). The device records stay for that logout,
   * whose hooks announce them gone; a device logged in meanwhile is left to it too.
   */
  async markDeactivated(account: AccountRecord): Promise<void> {
    const record: AccountRecord = { ...account, deactivated: true, deactivationPending: true };
    const devices = await this.listDevices(account.userId);
    const op = this.kv.atomic()
      .set(keys.account(account.userId), record)
      .set(keys.pendingDeactivation(account.userId), true);
    for (const device of devices.slice(0, TOKENS_REVOKED_WITH_DEACTIVATION)) {
      this.deleteTokens(op, device);
    }
    await op.commit();
  }

  /** See AccountStore.pendingDeactivations. */
  async pendingDeactivations(limit = 100): Promise<string[]> {
    const out: string[] = [];
    const prefix = keys.pendingDeactivationPrefix();
    for await (const entry of this.kv.list({ prefix }, { limit })) {
      out.push(entry.key[entry.key.length - 1] as string);
    }
    return out;
  }

  /** See AccountStore.finishDeactivation: the record is rewritten only if still flagged. */
  async finishDeactivation(userId: string): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<AccountRecord>(keys.account(userId));
      const op = this.kv.atomic().check(entry).delete(keys.pendingDeactivation(userId));
      if (entry.value?.deactivationPending) {
        const record = { ...entry.value };
        delete record.deactivationPending;
        op.set(entry.key, record);
      }
      if ((await op.commit()).ok) return;
    }
    throw contentionError(`finishing the deactivation of ${userId}`);
  }

  /** Read one device. */
  async getDevice(userId: string, deviceId: string): Promise<DeviceRecord | null> {
    return (await this.kv.get<DeviceRecord>(keys.device(userId, deviceId))).value;
  }

  /** All devices of a user, in device ID order. */
  async listDevices(userId: string): Promise<DeviceRecord[]> {
    const out: DeviceRecord[] = [];
    for await (const entry of this.kv.list<DeviceRecord>({ prefix: keys.devicePrefix(userId) })) {
      out.push(entry.value);
    }
    return out;
  }

  /** Make `tokens` the device's only tokens, creating or updating the device record. */
  async issueTokens(
    userId: string,
    deviceId: string,
    update: (current: DeviceRecord | null) => DeviceRecord,
    tokens: IssuedTokens,
  ): Promise<DeviceRecord> {
    const key = keys.device(userId, deviceId);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<DeviceRecord>(key);
      const { op, next } = this.replaceTokens(entry, update(entry.value), tokens);
      if ((await op.commit()).ok) return next;
    }
    throw contentionError(`issuing tokens for device ${deviceId}`);
  }

  /** Update a device's metadata, keeping its tokens. */
  async updateDevice(
    userId: string,
    deviceId: string,
    update: (current: DeviceRecord) => DeviceRecord,
  ): Promise<boolean> {
    const key = keys.device(userId, deviceId);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<DeviceRecord>(key);
      if (!entry.value) return false;
      const next = {
        ...update(entry.value),
        accessTokenHash: entry.value.accessTokenHash,
        refreshTokenHash: entry.value.refreshTokenHash,
      };
      if ((await this.kv.atomic().check(entry).set(key, next).commit()).ok) return true;
    }
    throw contentionError(`updating device ${deviceId}`);
  }

  /** Delete devices with their tokens; returns the revoked access token hashes. */
  async deleteDevices(userId: string, deviceIds: string[]): Promise<string[]> {
    const revoked: string[] = [];
    // One device per commit keeps each commit far below KV's mutation limits for any count.
    for (const deviceId of new Set(deviceIds)) {
      const key = keys.device(userId, deviceId);
      for (let attempt = 0;; attempt++) {
        const entry = await this.kv.get<DeviceRecord>(key);
        if (!entry.value) break;
        const op = this.kv.atomic().check(entry).delete(key);
        this.deleteTokens(op, entry.value);
        if (entry.value.dehydrated) {
          // The user's dehydrated-device entry goes with the device it names, never dangling.
          const pointer = await this.kv.get<StoredDehydratedDevice>(
            e2eeKeys.dehydratedDevice(userId),
          );
          op.check(pointer);
          if (pointer.value?.deviceId === deviceId) op.delete(pointer.key);
        }
        if ((await op.commit()).ok) {
          if (entry.value.accessTokenHash) revoked.push(entry.value.accessTokenHash);
          break;
        }
        if (attempt >= MAX_ATTEMPTS) throw contentionError(`deleting device ${deviceId}`);
      }
    }
    return revoked;
  }

  /** See AccountStore.getDehydratedDevice. */
  async getDehydratedDevice(userId: string): Promise<DehydratedDeviceRecord | null> {
    const stored =
      (await this.kv.get<StoredDehydratedDevice>(e2eeKeys.dehydratedDevice(userId))).value;
    if (!stored) return null;
    return {
      deviceId: stored.deviceId,
      deviceData: JSON.parse(new TextDecoder().decode(stored.deviceData)) as JsonObject,
    };
  }

  /** See AccountStore.createDehydratedDevice: both keys are checked empty in the commit. */
  async createDehydratedDevice(
    device: DeviceRecord,
    deviceData: JsonObject,
  ): Promise<DehydratedDeviceCreation> {
    const deviceKey = keys.device(device.userId, device.deviceId);
    const pointerKey = e2eeKeys.dehydratedDevice(device.userId);
    const record: DeviceRecord = { ...device, dehydrated: true };
    delete record.accessTokenHash;
    delete record.refreshTokenHash;
    const stored: StoredDehydratedDevice = {
      deviceId: device.deviceId,
      deviceData: new TextEncoder().encode(JSON.stringify(deviceData)),
    };
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const [existing, pointer] = await this.kv.getMany([deviceKey, pointerKey]);
      if (existing.value !== null) return "device_exists";
      if (pointer.value !== null) return "occupied";
      const { ok } = await this.kv.atomic()
        .check(existing, pointer)
        .set(deviceKey, record)
        .set(pointerKey, stored)
        .commit();
      if (ok) return "created";
    }
    throw contentionError(`creating the dehydrated device of ${device.userId}`);
  }

  /** Look up an access token hash. */
  async getAccessToken(hash: string): Promise<AccessTokenRecord | null> {
    return (await this.kv.get<AccessTokenRecord>(keys.accessToken(hash))).value;
  }

  /** Look up a refresh token hash. */
  async getRefreshToken(hash: string): Promise<RefreshTokenRecord | null> {
    return (await this.kv.get<RefreshTokenRecord>(keys.refreshToken(hash))).value;
  }

  /**
   * See AccountStore.rotateOAuthTokens: the device's versionstamp guards the commit, so of two
   * rotations of one token only one wins; the spent record is written in that same commit, so
   * reuse is recognised from the moment the new tokens exist.
   */
  async rotateOAuthTokens(
    userId: string,
    deviceId: string,
    spentHash: string,
    spent: SpentRefreshRecord,
    tokens: IssuedTokens,
  ): Promise<boolean> {
    const key = keys.device(userId, deviceId);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<DeviceRecord>(key);
      const current = entry.value;
      if (
        !current || current.refreshTokenHash !== spentHash ||
        current.oauthSessionId !== spent.oauthSessionId
      ) return false;
      const { op } = this.replaceTokens(entry, current, tokens);
      op.set(oauthKeys.spentRefresh(spentHash), spent, {
        expireIn: Math.max(1, spent.expiresAt - this.now()),
      });
      if ((await op.commit()).ok) return true;
    }
    throw contentionError(`rotating the tokens of device ${deviceId}`);
  }

  /** See AccountStore.deleteOAuthDevice. */
  async deleteOAuthDevice(
    userId: string,
    deviceId: string,
    oauthSessionId: string,
  ): Promise<boolean> {
    const key = keys.device(userId, deviceId);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<DeviceRecord>(key);
      // OAuth sessions never bind a dehydrated device, so there is no pointer to drop.
      if (entry.value?.oauthSessionId !== oauthSessionId || entry.value.dehydrated) return false;
      const op = this.kv.atomic().check(entry).delete(key);
      this.deleteTokens(op, entry.value);
      if ((await op.commit()).ok) return true;
    }
    throw contentionError(`deleting device ${deviceId}`);
  }

  /** See AccountStore.getSpentRefresh. */
  async getSpentRefresh(hash: string): Promise<SpentRefreshRecord | null> {
    const record = (await this.kv.get<SpentRefreshRecord>(oauthKeys.spentRefresh(hash))).value;
    return record && record.expiresAt > this.now() ? record : null;
  }

  /** Read a UIA session unless it has expired. */
  async getUiaSession(id: string): Promise<UiaSessionRecord | null> {
    const session = (await this.kv.get<UiaSessionRecord>(keys.uiaSession(id))).value;
    return session && session.expiresAt > this.now() ? session : null;
  }

  /** Store a UIA session; KV drops it some time after it expires. */
  async putUiaSession(session: UiaSessionRecord): Promise<void> {
    await this.kv.set(keys.uiaSession(session.id), session, {
      expireIn: Math.max(1, session.expiresAt - this.now()),
    });
  }

  /** Forget a UIA session (after it authorised its request). */
  async deleteUiaSession(id: string): Promise<void> {
    await this.kv.delete(keys.uiaSession(id));
  }

  /** Store a login token hash until it expires. */
  async putLoginToken(hash: string, record: LoginTokenRecord): Promise<void> {
    await this.kv.set(keys.loginToken(hash), record, {
      expireIn: Math.max(1, record.expiresAt - this.now()),
    });
  }

  /** Consume a login token: only one caller can win the delete. */
  async takeLoginToken(hash: string): Promise<LoginTokenRecord | null> {
    const entry = await this.kv.get<LoginTokenRecord>(keys.loginToken(hash));
    if (!entry.value) return null;
    const { ok } = await this.kv.atomic().check(entry).delete(entry.key).commit();
    if (!ok || entry.value.expiresAt <= this.now()) return null;
    return entry.value;
  }

  /**
   * The commit making `tokens` the only tokens of `device` (written at `entry`'s key, guarded by
   * its versionstamp, the tokens it had before deleted); callers may add to it before committing.
   * Shared by logins, /refresh and OAuth rotation, so a token swap cannot leave an old token.
   */
  private replaceTokens(
    entry: Deno.KvEntryMaybe<DeviceRecord>,
    device: DeviceRecord,
    tokens: IssuedTokens,
  ): { op: Deno.AtomicOperation; next: DeviceRecord } {
    const next: DeviceRecord = {
      ...device,
      accessTokenHash: tokens.accessHash,
      refreshTokenHash: tokens.refreshHash,
    };
    if (next.refreshTokenHash === undefined) delete next.refreshTokenHash;
    const op = this.kv.atomic().check(entry).set(entry.key, next);
    if (entry.value) this.deleteTokens(op, entry.value);
    this.setTokens(op, tokens);
    return { op, next };
  }

  private setTokens(op: Deno.AtomicOperation, tokens: IssuedTokens): void {
    op.set(keys.accessToken(tokens.accessHash), tokens.access);
    if (tokens.refreshHash) {
      op.set(
        keys.refreshToken(tokens.refreshHash),
        {
          userId: tokens.access.userId,
          deviceId: tokens.access.deviceId,
          ...(tokens.oauthSessionId !== undefined && { oauthSessionId: tokens.oauthSessionId }),
        } satisfies RefreshTokenRecord,
      );
    }
  }

  private deleteTokens(op: Deno.AtomicOperation, device: DeviceRecord): void {
    if (device.accessTokenHash) op.delete(keys.accessToken(device.accessTokenHash));
    if (device.refreshTokenHash) op.delete(keys.refreshToken(device.refreshTokenHash));
  }
}
