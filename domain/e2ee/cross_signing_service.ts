/**
 * Cross-signing use cases (spec: "Cross-signing"): publishing a user's master, self-signing and
 * user-signing keys (/keys/device_signing/upload) and signatures made with them or with device
 * keys (/keys/signatures/upload). Pure over injected storage: every signature is checked here,
 * and the store commits each change with its device-list update.
 */
import { forbidden, missingParam } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { DeviceKeyReader } from "../ports/device_key_store.ts";
import type {
  CrossSigningKeyChange,
  CrossSigningKeySet,
  CrossSigningStore,
  CrossSigningUsage,
} from "../ports/cross_signing_store.ts";
import {
  checkCrossSigningKeyShape,
  hasValidSignature,
  invalidSignature,
  publicKeyOf,
  publicKeyOrNull,
  sameKeyObject,
} from "./cross_signing_keys.ts";
import {
  type KeyQueryResponse,
  type KnownDevice,
  queryKeys,
  type RemoteKeyQuerier,
} from "./key_query.ts";
import {
  fetchRemoteMasterKeys,
  planSignatures,
  type RemoteMasterKey,
  type SignatureFailures,
  type SignatureUploadItem,
} from "./signature_upload.ts";
import { parseUserId } from "../protocol/identifiers.ts";

/** The keys of one /keys/device_signing/upload body (any subset). */
export type SigningKeyUpload = Partial<Record<CrossSigningUsage, unknown>>;

/** What the service needs besides its store. */
export interface CrossSigningDeps {
  store: CrossSigningStore;
  deviceKeys: DeviceKeyReader;
  /** The user's current devices (cross-signing public keys may not collide with their IDs). */
  devicesOf(userId: string): Promise<KnownDevice[]>;
  /** Remote key queries; absent until federation provides them. */
  remote?: RemoteKeyQuerier;
  /** After a commit that changed a user's device list: wake their and their room-mates' syncs. */
  deviceListsChanged(userIds: string[], versionstamp: string): Promise<void>;
  /** After a commit that only the user's own syncs need to see (a signature notice). */
  notifyUser(userId: string, versionstamp: string): void;
  /** This server's name: users elsewhere have no keys here until federation fetches them. */
  serverName: string;
  /**
   * Longest wait for other servers' users' master keys in a signature upload (default
   * REMOTE_MASTER_TIMEOUT_MS).
   */
  remoteMasterTimeoutMs?: number;
}

/** Attempts at a signature batch whose checked keys keep changing under it. */
const SIGNATURE_ATTEMPTS = 8;
/** Target users per signature commit (each brings a key check; a commit takes 100 checks). */
const TARGET_USERS_PER_COMMIT = 40;

/** Publishes cross-signing keys and signatures. */
export class CrossSigningService {
  /** Over the store and look-ups in `deps`. */
  constructor(private readonly deps: CrossSigningDeps) {}

  /**
   * Publish `userId`'s cross-signing keys. `authenticate` runs user-interactive auth; it is
   * needed only when the user has a master key already and the upload is not the stored keys
   * again (spec 1.11: the first upload and an idempotent retry need none).
   */
  async uploadSigningKeys(
    userId: string,
    upload: SigningKeyUpload,
    authenticate: () => Promise<void>,
  ): Promise<void> {
    const keys: CrossSigningKeySet = {};
    const publicKeys: string[] = [];
    for (const usage of ["master", "self_signing", "user_signing"] as const) {
      const key = upload[usage];
      if (key === undefined || key === null) continue;
      publicKeys.push(checkCrossSigningKeyShape(key, userId, usage));
      keys[usage] = key as JsonObject;
    }
    if (publicKeys.length === 0) return;
    const deviceIds = new Set((await this.deps.devicesOf(userId)).map((d) => d.deviceId));
    if (publicKeys.some((k) => deviceIds.has(k))) {
      throw forbidden("A cross-signing public key is the same as one of the user's device IDs");
    }

    let authenticated = false;
    let ownerOnly = false;
    const versionstamp = await this.deps.store.updateKeys(userId, async (current) => {
      const provided = Object.keys(keys) as CrossSigningUsage[];
      if (provided.every((u) => current[u] !== undefined && sameKeyObject(current[u]!, keys[u]!))) {
        return null; // the stored keys again: nothing to do, and no auth to ask for
      }
      const master = keys.master ?? current.master;
      if (master === undefined) throw missingParam("No master signing key is available");
      const masterKey = publicKeyOf(master);
      for (const usage of ["self_signing", "user_signing"] as const) {
        const key = keys[usage];
        if (key !== undefined && !(await hasValidSignature(key, userId, masterKey))) {
          throw invalidSignature(`The ${usage} key is not signed by the master key`);
        }
      }
      if (current.master !== undefined && !authenticated) {
        await authenticate();
        authenticated = true;
      }
      const change = keyChange(current, keys);
      ownerOnly = change.ownerOnly === true;
      return change;
    });
    if (versionstamp === null) return;
    // A new user-signing key alone concerns only its owner (as Synapse notifies it).
    if (ownerOnly) this.deps.notifyUser(userId, versionstamp);
    else await this.deps.deviceListsChanged([userId], versionstamp);
  }

  /**
   * Publish signatures: `body` maps user IDs to key IDs (device IDs or cross-signing public
   * keys) to signed objects. Each key succeeds or fails on its own; failures are returned.
   */
  async uploadSignatures(
    userId: string,
    body: Record<string, Record<string, unknown>>,
  ): Promise<{ failures: SignatureFailures }> {
    const failures: SignatureFailures = {};
    const items: SignatureUploadItem[] = [];
    for (const [targetUserId, byKey] of Object.entries(body)) {
      for (const [keyId, signed] of Object.entries(byKey)) {
        items.push({ targetUserId, keyId, signed });
      }
    }
    // The signer's own keys first, then other users' master keys a few dozen users at a time.
    const own = items.filter((i) => i.targetUserId === userId);
    const others = items.filter((i) => i.targetUserId !== userId);
    const targets = [...new Set(others.map((i) => i.targetUserId))];
    const batches = [own];
    for (let i = 0; i < targets.length; i += TARGET_USERS_PER_COMMIT) {
      const chunk = new Set(targets.slice(i, i + TARGET_USERS_PER_COMMIT));
      batches.push(others.filter((item) => chunk.has(item.targetUserId)));
    }
    const remoteMasters = await this.#remoteMasters(userId, targets);
    for (const batch of batches) {
      if (batch.length > 0) {
        await this.#commitSignatureBatch(userId, batch, failures, remoteMasters);
      }
    }
    return { failures };
  }

  /**
   * Answer `requester`'s /keys/query: `query` maps user IDs to device IDs ([] for all); remote
   * servers get `timeoutMs` (already bounded) to answer.
   */
  queryKeys(
    requester: string,
    query: Record<string, string[]>,
    timeoutMs: number,
  ): Promise<KeyQueryResponse> {
    return queryKeys(this.deps, requester, query, timeoutMs);
  }

  /** Forget signatures on and by deleted devices (an `accounts.devicesRemovedHooks` entry). */
  async devicesRemoved(userId: string, deviceIds: string[]): Promise<void> {
    await this.deps.store.removeDeviceSignatures(userId, deviceIds);
  }

  /**
   * The master keys of the users of other servers among `targets`, asked of their servers once
   * for the whole upload (not per batch or retry), and only when `signer` has a user-signing
   * key to sign them with: without one their items fail before the keys matter.
   */
  async #remoteMasters(
    signer: string,
    targets: readonly string[],
  ): Promise<Map<string, RemoteMasterKey>> {
    const remote = targets.filter((userId) => {
      const parsed = parseUserId(userId);
      return parsed.ok && parsed.value.serverName !== this.deps.serverName;
    });
    if (remote.length === 0) return new Map();
    const own = (await this.deps.store.keysOf([signer])).get(signer);
    if (own?.user_signing === undefined) return new Map();
    return await fetchRemoteMasterKeys(this.deps.remote, remote, this.deps.remoteMasterTimeoutMs);
  }

  async #commitSignatureBatch(
    userId: string,
    batch: SignatureUploadItem[],
    failures: SignatureFailures,
    remoteMasters: ReadonlyMap<string, RemoteMasterKey>,
  ): Promise<void> {
    for (let attempt = 0; attempt < SIGNATURE_ATTEMPTS; attempt++) {
      const plan = await planSignatures(this.deps, userId, batch, remoteMasters);
      if (plan.write.signatures.length === 0) {
        mergeFailures(failures, plan.failures);
        return;
      }
      const result = await this.deps.store.addSignatures(plan.write);
      if (result === "stale") continue; // a checked key changed meanwhile: check again
      mergeFailures(failures, plan.failures);
      if (plan.write.signerDeviceIds.length > 0 || plan.write.signerCrossSigning) {
        await this.deps.deviceListsChanged([userId], result);
      } else {
        this.deps.notifyUser(userId, result);
      }
      return;
    }
    for (const item of batch) {
      (failures[item.targetUserId] ??= {})[item.keyId] = {
        errcode: "M_UNKNOWN",
        error: "The keys changed repeatedly while the signatures were checked; try again",
      };
    }
  }
}

/**
 * The stored change for a checked upload: a new master key voids the old self-signing and
 * user-signing keys (unless replaced in the same upload) and every signature on or by the old
 * keys.
 */
function keyChange(current: CrossSigningKeySet, upload: CrossSigningKeySet): CrossSigningKeyChange {
  const change: CrossSigningKeyChange = {
    put: upload,
    remove: [],
    staleSignatures: { targetKeyIds: [], ownSignerKeyIds: [] },
  };
  const oldMaster = publicKeyOrNull(current.master);
  if (
    upload.master !== undefined && oldMaster !== null && oldMaster !== publicKeyOf(upload.master)
  ) {
    for (const usage of ["self_signing", "user_signing"] as const) {
      if (upload[usage] === undefined && current[usage] !== undefined) change.remove.push(usage);
    }
    change.staleSignatures.targetKeyIds.push(oldMaster);
  }
  const oldSelfSigning = publicKeyOrNull(current.self_signing);
  const replaced = upload.self_signing !== undefined &&
    publicKeyOf(upload.self_signing) !== oldSelfSigning;
  if (oldSelfSigning !== null && (replaced || change.remove.includes("self_signing"))) {
    change.staleSignatures.ownSignerKeyIds.push(`ed25519:${oldSelfSigning}`);
  }
  // Others see the master and self-signing keys (and what they sign); the user-signing key
  // only signs for its owner.
  const othersSee = change.remove.length > 0 ||
    (["master", "self_signing"] as const).some((usage) =>
      upload[usage] !== undefined &&
      (current[usage] === undefined || !sameKeyObject(current[usage]!, upload[usage]!))
    );
  change.ownerOnly = !othersSee;
  return change;
}

function mergeFailures(into: SignatureFailures, from: SignatureFailures): void {
  for (const [userId, byKey] of Object.entries(from)) {
    into[userId] = { ...into[userId], ...byKey };
  }
}
