/**
 * Cross-signing in KV: one UTF-8 JSON record per (user, usage), one record per uploaded
 * signature keyed (target user, target key, signer user, signer key), and per-signer signature
 * notices keyed by commit versionstamp. Key changes and signatures on a user's own keys commit
 * with that user's device-list update (kv/device_list_log.ts).
 */
import type { JsonObject } from "../domain/protocol/json.ts";
import {
  CROSS_SIGNING_USAGES,
  type CrossSigningKeyChange,
  type CrossSigningKeySet,
  type CrossSigningStore,
  type CrossSigningUsage,
  type SignatureWrite,
  type UploadedSignature,
} from "../domain/ports/cross_signing_store.ts";
import { publicKeyOrNull } from "../domain/e2ee/cross_signing_keys.ts";
import { decodeJson, encodeJson } from "./chunked_value.ts";
import { commitWithDeviceListChanges } from "./device_list_log.ts";
import { addWakes } from "./wake_keys.ts";
import { getManyChunked } from "./get_many.ts";
import { e2eeKeys } from "./schema.ts";
import { listChanges } from "./versioned_records.ts";

/** A signature notice: the users whose keys the signer signed in that commit. */
interface SignatureNotice {
  userIds: string[];
}

/**
 * Stale signatures deleted in the key change's own commit; more are swept in follow-up
 * commits (signature keys run to about 200 bytes, and a commit takes 80 KiB of keys).
 */
const SWEEP_PER_COMMIT = 250;

/** The KV implementation of the cross-signing port. */
export class KvCrossSigningStore implements CrossSigningStore {
  /** Store cross-signing data in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async keysOf(userIds: readonly string[]): Promise<Map<string, CrossSigningKeySet>> {
    const n = CROSS_SIGNING_USAGES.length;
    const keys = userIds.flatMap((userId) =>
      CROSS_SIGNING_USAGES.map((usage) => e2eeKeys.crossSigningKey(userId, usage))
    );
    const entries = await getManyChunked<Uint8Array>(this.kv, keys);
    const out = new Map<string, CrossSigningKeySet>();
    userIds.forEach((userId, i) => out.set(userId, keySet(entries.slice(i * n, i * n + n))));
    return out;
  }

  async updateKeys(
    userId: string,
    plan: (current: CrossSigningKeySet) => Promise<CrossSigningKeyChange | null>,
  ): Promise<string | null> {
    let leftover = false;
    let staleSpec: CrossSigningKeyChange["staleSignatures"] | undefined;
    const committed = await commitWithDeviceListChanges(this.kv, async (op, changes) => {
      const entries = await this.#keyEntries(userId);
      const current = keySet(entries);
      const change = await plan(current);
      if (change === null) return null;
      const after: CrossSigningKeySet = { ...current };
      for (const usage of change.remove) delete after[usage];
      Object.assign(after, change.put);
      for (const entry of entries) op.check(entry);
      for (const usage of change.remove) op.delete(e2eeKeys.crossSigningKey(userId, usage));
      for (const usage of CROSS_SIGNING_USAGES) {
        const key = change.put[usage];
        if (key !== undefined) op.set(e2eeKeys.crossSigningKey(userId, usage), encodeJson(key));
      }
      const stale = await this.#staleSignatureKeys(userId, change.staleSignatures, after);
      for (const key of stale.slice(0, SWEEP_PER_COMMIT)) op.delete(key);
      leftover = stale.length > SWEEP_PER_COMMIT;
      staleSpec = change.staleSignatures;
      if (change.ownerOnly) {
        op.set(
          [...e2eeKeys.signatureNoticePrefix(userId), this.kv.commitVersionstamp()],
          { userIds: [userId] } satisfies SignatureNotice,
        );
        // A notice is read by its owner's syncs only.
        addWakes(op, { userIds: [userId] });
      } else {
        changes.add(userId, { crossSigning: true });
      }
      return true;
    });
    if (committed === null) return null;
    if (leftover && staleSpec) await this.#sweep(userId, staleSpec);
    return committed.versionstamp;
  }

  async signaturesOn(userId: string): Promise<UploadedSignature[]> {
    const out: UploadedSignature[] = [];
    for await (const entry of this.kv.list<string>({ prefix: e2eeKeys.signaturePrefix(userId) })) {
      out.push(signatureFromEntry(entry));
    }
    return out;
  }

  async signaturesBy(
    userId: string,
    signerUserIds: readonly string[],
    masterKey: string | null,
  ): Promise<UploadedSignature[]> {
    const prefix = e2eeKeys.signaturePrefix(userId);
    const out: UploadedSignature[] = [];
    const read = async (selector: Deno.KvListSelector, signer?: string) => {
      for await (const entry of this.kv.list<string>(selector)) {
        const signature = signatureFromEntry(entry);
        if (signer === undefined || signature.signerUserId === signer) out.push(signature);
      }
    };
    const signers = new Set(signerUserIds);
    if (signers.has(userId)) {
      if (masterKey === null) {
        await read({ prefix }, userId);
      } else {
        // The owner's signatures everywhere, skipping other users' on the master key: the key
        // IDs before the master key, the owner's on it, and the key IDs after it (a device ID
        // cannot hold the control character that starts the range after the master key's).
        await read({ prefix, end: [...prefix, masterKey] }, userId);
        await read({ prefix: [...prefix, masterKey, userId] });
        await read({ prefix, start: [...prefix, `${masterKey}\u0000`] }, userId);
      }
    }
    if (masterKey !== null) {
      for (const signer of signers) {
        if (signer !== userId) await read({ prefix: [...prefix, masterKey, signer] });
      }
    }
    return out;
  }

  async addSignatures(write: SignatureWrite): Promise<string | "stale"> {
    let stale = false;
    const committed = await commitWithDeviceListChanges(this.kv, async (op, changes) => {
      const entries = await getManyChunked<Uint8Array>(
        this.kv,
        write.expected.map((e) => e2eeKeys.crossSigningKey(e.userId, e.usage)),
      );
      for (const [i, entry] of entries.entries()) {
        const current = entry.value ? decodeJson<JsonObject>(entry.value) : undefined;
        if (publicKeyOrNull(current) !== write.expected[i].publicKey) {
          stale = true;
          return null;
        }
        op.check(entry);
      }
      for (const s of write.signatures) {
        op.set(
          e2eeKeys.signature(s.targetUserId, s.targetKeyId, s.signerUserId, s.signerKeyId),
          s.signature,
        );
      }
      if (write.noticeTargets.length > 0) {
        op.set(
          [...e2eeKeys.signatureNoticePrefix(write.signerUserId), this.kv.commitVersionstamp()],
          { userIds: [...write.noticeTargets] } satisfies SignatureNotice,
        );
        addWakes(op, { userIds: [write.signerUserId] });
      }
      if (write.signerDeviceIds.length > 0 || write.signerCrossSigning) {
        changes.add(write.signerUserId, {
          deviceIds: write.signerDeviceIds,
          crossSigning: write.signerCrossSigning,
        });
      }
      return true;
    });
    if (stale || committed === null) return "stale";
    return committed.versionstamp;
  }

  async signatureNoticeTargets(
    signerUserId: string,
    since: string,
    upTo: string,
  ): Promise<string[]> {
    const notices = await listChanges<SignatureNotice>(
      this.kv,
      e2eeKeys.signatureNoticePrefix(signerUserId),
      since,
      upTo,
    );
    return [...new Set(notices.flatMap((n) => n.value.userIds))];
  }

  async removeDeviceSignatures(userId: string, deviceIds: readonly string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    const master = publicKeyOrNull(keySet(await this.#keyEntries(userId)).master);
    const keys: Deno.KvKey[] = [];
    for (const deviceId of deviceIds) {
      for await (
        const entry of this.kv.list({ prefix: e2eeKeys.signaturePrefix(userId, deviceId) })
      ) keys.push(entry.key);
      if (master !== null) {
        keys.push(e2eeKeys.signature(userId, master, userId, `ed25519:${deviceId}`));
      }
    }
    // Deleting what is already gone is harmless, so chunks need no checks and may be re-run.
    for (let i = 0; i < keys.length; i += SWEEP_PER_COMMIT) {
      const op = this.kv.atomic();
      for (const key of keys.slice(i, i + SWEEP_PER_COMMIT)) op.delete(key);
      await op.commit();
    }
  }

  #keyEntries(userId: string): Promise<Deno.KvEntryMaybe<Uint8Array>[]> {
    return getManyChunked<Uint8Array>(
      this.kv,
      CROSS_SIGNING_USAGES.map((usage) => e2eeKeys.crossSigningKey(userId, usage)),
    );
  }

  /**
   * Keys of `userId`'s uploaded signatures that `stale` voids, except those on or by a key in
   * `current` (a key uploaded again since makes its signatures valid again).
   */
  async #staleSignatureKeys(
    userId: string,
    stale: CrossSigningKeyChange["staleSignatures"],
    current: CrossSigningKeySet,
  ): Promise<Deno.KvKey[]> {
    const targets = new Set(stale.targetKeyIds);
    const signers = new Set(stale.ownSignerKeyIds);
    const masterNow = publicKeyOrNull(current.master);
    const selfSigningNow = publicKeyOrNull(current.self_signing);
    if (masterNow !== null) targets.delete(masterNow);
    if (selfSigningNow !== null) signers.delete(`ed25519:${selfSigningNow}`);
    if (targets.size === 0 && signers.size === 0) return [];
    const keys: Deno.KvKey[] = [];
    for await (const entry of this.kv.list({ prefix: e2eeKeys.signaturePrefix(userId) })) {
      const s = signatureFromEntry(entry as Deno.KvEntry<string>);
      const byStaleSigner = s.signerUserId === userId && signers.has(s.signerKeyId);
      if (targets.has(s.targetKeyId) || byStaleSigner) keys.push(entry.key);
    }
    return keys;
  }

  /** Delete the rest of the stale signatures, a commit at a time, while they stay stale. */
  async #sweep(userId: string, stale: CrossSigningKeyChange["staleSignatures"]): Promise<void> {
    for (;;) {
      const entries = await this.#keyEntries(userId);
      const keys = await this.#staleSignatureKeys(userId, stale, keySet(entries));
      if (keys.length === 0) return;
      const op = this.kv.atomic();
      // If the keys change meanwhile, the next round re-reads which signatures are stale.
      for (const entry of entries) op.check(entry);
      for (const key of keys.slice(0, SWEEP_PER_COMMIT)) op.delete(key);
      await op.commit();
    }
  }
}

function keySet(entries: readonly Deno.KvEntryMaybe<Uint8Array>[]): CrossSigningKeySet {
  const set: CrossSigningKeySet = {};
  entries.forEach((entry, i) => {
    if (entry.value) set[CROSS_SIGNING_USAGES[i] as CrossSigningUsage] = decodeJson(entry.value);
  });
  return set;
}

function signatureFromEntry(entry: Deno.KvEntry<string>): UploadedSignature {
  const [, targetUserId, targetKeyId, signerUserId, signerKeyId] = entry.key as string[];
  return { targetUserId, targetKeyId, signerUserId, signerKeyId, signature: entry.value };
}
