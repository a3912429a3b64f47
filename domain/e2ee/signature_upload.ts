/**
 * Checking one batch of /keys/signatures/upload. Three cases are accepted (spec: "Cross-signing"):
 * the signer's own device keys signed by their self-signing key, the signer's own master key
 * signed by one of their devices, and another user's master key signed by the signer's
 * user-signing key. The signed object must be the stored key (signatures and `unsigned` aside);
 * only new signatures are kept, and each is verified.
 *
 * Another server's user's master key is the one their server answers now (through the remote
 * key querier, cached while we share a room with them); the signature is stored here only, as
 * Synapse does: a user-signing signature is for its signer's eyes, shown on their /keys/query.
 */
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import { parseUserId } from "../protocol/identifiers.ts";
import type { DeviceKeyReader } from "../ports/device_key_store.ts";
import type {
  CrossSigningKeySet,
  CrossSigningStore,
  ExpectedCrossSigningKey,
  SignatureWrite,
  UploadedSignature,
} from "../ports/cross_signing_store.ts";
import {
  checkCrossSigningKeyShape,
  hasValidSignature,
  publicKeyOrNull,
  signatureOf,
  signedContent,
} from "./cross_signing_keys.ts";
import { KEY_QUERY_TIMEOUT, type RemoteKeyQuerier } from "./key_query.ts";

/** One key of an upload: `{targetUserId: {keyId: signed}}`. */
export interface SignatureUploadItem {
  targetUserId: string;
  keyId: string;
  signed: unknown;
}

/** One key's failure, as the response reports it. */
export interface SignatureFailure {
  errcode: string;
  error: string;
}

/** Failures by user ID, then key ID. */
export type SignatureFailures = Record<string, Record<string, SignatureFailure>>;

/** A checked batch: what to commit, and the keys that failed. */
export interface SignaturePlan {
  write: SignatureWrite;
  failures: SignatureFailures;
}

/** What checking needs to read. */
export interface SignaturePlanDeps {
  store: Pick<CrossSigningStore, "keysOf" | "signaturesBy">;
  deviceKeys: DeviceKeyReader;
  serverName: string;
  /** Other servers' users' keys; without it their master keys cannot be signed. */
  remote?: RemoteKeyQuerier;
}

class ItemFailure extends Error {
  constructor(readonly errcode: string, message: string) {
    super(message);
  }
}

/** Read what `batch` depends on and check each of its keys. */
export async function planSignatures(
  deps: SignaturePlanDeps,
  signer: string,
  batch: readonly SignatureUploadItem[],
): Promise<SignaturePlan> {
  const targets = [...new Set(batch.map((i) => i.targetUserId))];
  const localTargets = targets.filter((u) => isLocal(u, deps.serverName));
  const [keys, ownDevices, remoteMasters] = await Promise.all([
    deps.store.keysOf([...new Set([signer, ...localTargets])]),
    deps.deviceKeys.deviceKeys(new Map([[signer, []]])),
    remoteMasterKeys(deps, targets.filter((u) => !isLocal(u, deps.serverName))),
  ]);
  for (const [userId, master] of remoteMasters) keys.set(userId, { master });
  // Only the signer's own signatures can make an upload a repeat.
  const existing = await Promise.all(
    [...localTargets, ...remoteMasters.keys()].map((u) =>
      deps.store.signaturesBy(u, [signer], publicKeyOrNull(keys.get(u)?.master))
    ),
  );
  const context: PlanContext = {
    signer,
    keys,
    ownDevices: ownDevices.get(signer) ?? new Map(),
    known: new Set(existing.flat().map(signatureKey)),
    serverName: deps.serverName,
    remoteTargets: new Set(remoteMasters.keys()),
  };
  const write: SignatureWrite = {
    signerUserId: signer,
    signatures: [],
    expected: [],
    signerDeviceIds: [],
    signerCrossSigning: false,
    noticeTargets: [],
  };
  const expected = new Map<string, ExpectedCrossSigningKey>();
  const failures: SignatureFailures = {};
  for (const item of batch) {
    try {
      const checked = await checkItem(context, item);
      if (checked.signatures.length === 0) continue;
      write.signatures.push(...checked.signatures);
      for (const e of checked.expected) expected.set(`${e.userId}\n${e.usage}`, e);
      if (checked.kind === "device") write.signerDeviceIds.push(item.keyId);
      if (checked.kind === "own_master") write.signerCrossSigning = true;
      if (checked.kind === "other_master" && !write.noticeTargets.includes(item.targetUserId)) {
        write.noticeTargets.push(item.targetUserId);
      }
    } catch (error) {
      if (!(error instanceof ItemFailure)) throw error;
      (failures[item.targetUserId] ??= {})[item.keyId] = {
        errcode: error.errcode,
        error: error.message,
      };
    }
  }
  write.expected = [...expected.values()];
  return { write, failures };
}

interface PlanContext {
  signer: string;
  keys: Map<string, CrossSigningKeySet>;
  ownDevices: Map<string, JsonObject>;
  /** Stored signatures, as `signatureKey` strings. */
  known: Set<string>;
  serverName: string;
  /** Other servers' users whose current master key their server gave us (in `keys`). */
  remoteTargets: Set<string>;
}

interface CheckedItem {
  kind: "device" | "own_master" | "other_master";
  signatures: UploadedSignature[];
  expected: ExpectedCrossSigningKey[];
}

async function checkItem(context: PlanContext, item: SignatureUploadItem): Promise<CheckedItem> {
  const { signer } = context;
  if (!isJsonObject(item.signed)) throw new ItemFailure("M_BAD_JSON", "Expected a signed object");
  const signed = item.signed;
  if (!parseUserId(item.targetUserId).ok) {
    throw new ItemFailure("M_INVALID_PARAM", "Not a valid user ID");
  }
  if (item.targetUserId === signer) {
    const mine = context.keys.get(signer) ?? {};
    const master = publicKeyOrNull(mine.master);
    if (master !== null && item.keyId === master) {
      return await checkOwnMaster(context, signed, mine.master!, master);
    }
    const device = context.ownDevices.get(item.keyId);
    if (device !== undefined) return await checkOwnDevice(context, item.keyId, signed, device);
    throw new ItemFailure("M_NOT_FOUND", "No such device or master key");
  }
  if (
    !isLocal(item.targetUserId, context.serverName) &&
    !context.remoteTargets.has(item.targetUserId)
  ) {
    throw new ItemFailure(
      "M_NOT_FOUND",
      "The user's master key could not be fetched from their server",
    );
  }
  return await checkOtherMaster(context, item, signed);
}

/** The signer's device keys, signed by their self-signing key. */
async function checkOwnDevice(
  context: PlanContext,
  deviceId: string,
  signed: JsonObject,
  stored: JsonObject,
): Promise<CheckedItem> {
  const { signer } = context;
  requireSameContent(signed, stored);
  const selfSigning = publicKeyOrNull(context.keys.get(signer)?.self_signing);
  if (selfSigning === null) throw new ItemFailure("M_NOT_FOUND", "No self-signing key uploaded");
  const keyId = `ed25519:${selfSigning}`;
  const signature = await newSignature(context, signed, signer, deviceId, keyId, selfSigning);
  return {
    kind: "device",
    signatures: signature ? [signature] : [],
    expected: [{ userId: signer, usage: "self_signing", publicKey: selfSigning }],
  };
}

/** The signer's master key, signed by one or more of their devices. */
async function checkOwnMaster(
  context: PlanContext,
  signed: JsonObject,
  stored: JsonObject,
  master: string,
): Promise<CheckedItem> {
  const { signer } = context;
  requireSameContent(signed, stored);
  const bySigner = isJsonObject(signed.signatures) ? signed.signatures[signer] : undefined;
  const signatures: UploadedSignature[] = [];
  for (const keyId of isJsonObject(bySigner) ? Object.keys(bySigner) : []) {
    // The master key's self-signature and copies of stored signatures are not new.
    if (keyId === `ed25519:${master}` || signatureOf(stored, signer, keyId) !== undefined) continue;
    const deviceId = keyId.startsWith("ed25519:") ? keyId.slice("ed25519:".length) : "";
    const deviceKey = context.ownDevices.get(deviceId)?.keys;
    const publicKey = isJsonObject(deviceKey) ? deviceKey[keyId] : undefined;
    if (typeof publicKey !== "string") {
      throw new ItemFailure("M_NOT_FOUND", `No device of the user has the key ${keyId}`);
    }
    const signature = await newSignature(context, signed, signer, master, keyId, publicKey);
    if (signature) signatures.push(signature);
  }
  return {
    kind: "own_master",
    signatures,
    expected: [{ userId: signer, usage: "master", publicKey: master }],
  };
}

/** Another local user's master key, signed by the signer's user-signing key. */
async function checkOtherMaster(
  context: PlanContext,
  item: SignatureUploadItem,
  signed: JsonObject,
): Promise<CheckedItem> {
  const { signer } = context;
  const target = context.keys.get(item.targetUserId)?.master;
  const master = publicKeyOrNull(target);
  if (master === null || item.keyId !== master) {
    throw new ItemFailure("M_NOT_FOUND", "Only the user's current master key can be signed");
  }
  requireSameContent(signed, target!);
  const userSigning = publicKeyOrNull(context.keys.get(signer)?.user_signing);
  if (userSigning === null) throw new ItemFailure("M_NOT_FOUND", "No user-signing key uploaded");
  const keyId = `ed25519:${userSigning}`;
  const signature = await newSignature(
    context,
    signed,
    item.targetUserId,
    master,
    keyId,
    userSigning,
  );
  return {
    kind: "other_master",
    signatures: signature ? [signature] : [],
    // Another server's user's key is not stored here: the check at commit is its server's
    // answer just now, and /keys/query shows only signatures on the master key it answers.
    expected: context.remoteTargets.has(item.targetUserId)
      ? [{ userId: signer, usage: "user_signing", publicKey: userSigning }]
      : [
        { userId: signer, usage: "user_signing", publicKey: userSigning },
        { userId: item.targetUserId, usage: "master", publicKey: master },
      ],
  };
}

/**
 * The current master keys of other servers' `users` (valid user IDs only), asked of their
 * servers; users whose server fails or has none are left out (their items then fail).
 */
async function remoteMasterKeys(
  deps: SignaturePlanDeps,
  users: readonly string[],
): Promise<Map<string, JsonObject>> {
  const out = new Map<string, JsonObject>();
  const remote = deps.remote;
  if (remote === undefined || users.length === 0) return out;
  const byServer = new Map<string, Record<string, string[]>>();
  for (const userId of users) {
    const parsed = parseUserId(userId);
    if (!parsed.ok) continue;
    const server = parsed.value.serverName;
    (byServer.get(server) ?? byServer.set(server, {}).get(server)!)[userId] = [];
  }
  await Promise.all([...byServer].map(async ([server, query]) => {
    try {
      const result = await remote.query(server, query, KEY_QUERY_TIMEOUT.defaultMs);
      for (const userId of Object.keys(query)) {
        const master = result.master_keys?.[userId];
        if (master !== undefined && isMasterKeyOf(master, userId)) out.set(userId, master);
      }
    } catch (error) {
      // Its users' items fail with M_NOT_FOUND; the rest of the upload goes on.
      console.warn("signature upload: master keys not fetched", server, error);
    }
  }));
  return out;
}

/**
 * The signer's signature with `signerKeyId` on `signed`, verified with `publicKey`; undefined
 * when that exact signature is stored already. Throws M_INVALID_SIGNATURE when it is missing or
 * does not verify.
 */
async function newSignature(
  context: PlanContext,
  signed: JsonObject,
  targetUserId: string,
  targetKeyId: string,
  signerKeyId: string,
  publicKey: string,
): Promise<UploadedSignature | undefined> {
  const signature = signatureOf(signed, context.signer, signerKeyId);
  if (signature === undefined) {
    throw new ItemFailure("M_INVALID_SIGNATURE", `Missing signature by ${signerKeyId}`);
  }
  const uploaded: UploadedSignature = {
    targetUserId,
    targetKeyId,
    signerUserId: context.signer,
    signerKeyId,
    signature,
  };
  if (context.known.has(signatureKey(uploaded))) return undefined;
  if (!(await hasValidSignature(signed, context.signer, publicKey, signerKeyId))) {
    throw new ItemFailure("M_INVALID_SIGNATURE", `Invalid signature by ${signerKeyId}`);
  }
  return uploaded;
}

function requireSameContent(signed: JsonObject, stored: JsonObject): void {
  let content: string;
  try {
    content = signedContent(signed);
  } catch {
    throw new ItemFailure("M_BAD_JSON", "The signed object has no canonical JSON form");
  }
  if (content !== signedContent(stored)) {
    throw new ItemFailure("M_INVALID_PARAM", "The signed object does not match the stored key");
  }
}

/** True when `key` has the shape of `userId`'s master key (what came from elsewhere). */
function isMasterKeyOf(key: JsonObject, userId: string): boolean {
  try {
    checkCrossSigningKeyShape(key, userId, "master");
    return true;
  } catch {
    return false;
  }
}

function signatureKey(s: UploadedSignature): string {
  return [s.targetUserId, s.targetKeyId, s.signerUserId, s.signerKeyId, s.signature].join("\n");
}

function isLocal(userId: string, serverName: string): boolean {
  const parsed = parseUserId(userId);
  return parsed.ok && parsed.value.serverName === serverName;
}
