/**
 * Checking one batch of /keys/signatures/upload. Three cases are accepted (spec: "Cross-signing"):
 * the signer's own device keys signed by their self-signing key, the signer's own master key
 * signed by one of their devices, and another user's master key signed by the signer's
 * user-signing key. The signed object must be the stored key (signatures and `unsigned` aside);
 * only new signatures are kept, and each is verified.
 *
 * Another server's user's master key is the one their server answers now (through the remote
 * key querier: the remote device cache while we share a room with them, else their server asked
 * directly), fetched once per upload before any batch is checked (`fetchRemoteMasterKeys`). The
 * signature is stored here only, as Synapse does: a user-signing signature is for its signer's
 * eyes, shown on their own /keys/query, never sent over federation. Nothing else of another
 * server's user can be signed here (their devices are signed by their own self-signing key).
 */
import { mapLimited, withDeadline } from "../concurrency.ts";
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
import {
  KEY_QUERY_TIMEOUT,
  type RemoteKeyQuerier,
  type RemoteKeyQueryResult,
} from "./key_query.ts";

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
}

/**
 * Another server's user's current master key as their server answered it, or why there is
 * none to check a signature against (the failure every item signing it reports).
 */
export type RemoteMasterKey = { key: JsonObject } | { failure: SignatureFailure };

/** Longest wait for other servers' master keys in one upload (as a /keys/query's default). */
export const REMOTE_MASTER_TIMEOUT_MS = KEY_QUERY_TIMEOUT.defaultMs;

/** Servers asked at once for their users' master keys. */
const SERVERS_IN_FLIGHT = 8;

class ItemFailure extends Error {
  constructor(readonly errcode: string, message: string) {
    super(message);
  }
}

/**
 * Read what `batch` depends on and check each of its keys. `remoteMasters` holds the master
 * keys of the batch's users on other servers (`fetchRemoteMasterKeys`); one missing there fails
 * its items.
 */
export async function planSignatures(
  deps: SignaturePlanDeps,
  signer: string,
  batch: readonly SignatureUploadItem[],
  remoteMasters: ReadonlyMap<string, RemoteMasterKey> = new Map(),
): Promise<SignaturePlan> {
  const targets = [...new Set(batch.map((i) => i.targetUserId))];
  const localTargets = targets.filter((u) => isLocal(u, deps.serverName));
  const [keys, ownDevices] = await Promise.all([
    deps.store.keysOf([...new Set([signer, ...localTargets])]),
    deps.deviceKeys.deviceKeys(new Map([[signer, []]])),
  ]);
  const remoteKeys = new Map<string, JsonObject>();
  for (const userId of targets) {
    const remote = remoteMasters.get(userId);
    if (remote !== undefined && "key" in remote && !isLocal(userId, deps.serverName)) {
      remoteKeys.set(userId, remote.key);
    }
  }
  // Only the signer's own signatures can make an upload a repeat.
  const existing = await Promise.all([
    ...localTargets.map((u) =>
      deps.store.signaturesBy(u, [signer], publicKeyOrNull(keys.get(u)?.master))
    ),
    ...[...remoteKeys].map(([u, key]) =>
      deps.store.signaturesBy(u, [signer], publicKeyOrNull(key))
    ),
  ]);
  const context: PlanContext = {
    signer,
    keys,
    ownDevices: ownDevices.get(signer) ?? new Map(),
    known: new Set(existing.flat().map(signatureKey)),
    serverName: deps.serverName,
    remoteMasters,
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
  /** Other servers' users' master keys, as their servers answered for this upload. */
  remoteMasters: ReadonlyMap<string, RemoteMasterKey>;
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
  if (!isLocal(item.targetUserId, context.serverName)) {
    return await checkRemoteMaster(context, item, signed);
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
  const checked = await userSigningSignature(context, item, signed, master, userSigning);
  checked.expected.push({ userId: item.targetUserId, usage: "master", publicKey: master });
  return checked;
}

/**
 * Another server's user's master key, as their server answered it for this upload, signed by
 * the signer's user-signing key. Their key is not stored here, so the commit checks only the
 * signer's key: if their server replaces the master key meanwhile, the signature is kept under
 * the old key's ID, and /keys/query, showing only signatures on the master key it answers,
 * never shows it.
 */
async function checkRemoteMaster(
  context: PlanContext,
  item: SignatureUploadItem,
  signed: JsonObject,
): Promise<CheckedItem> {
  // The signer's key first: without one, their server was not asked.
  const userSigning = publicKeyOrNull(context.keys.get(context.signer)?.user_signing);
  if (userSigning === null) throw new ItemFailure("M_NOT_FOUND", "No user-signing key uploaded");
  const remote = context.remoteMasters.get(item.targetUserId);
  if (remote === undefined) {
    throw new ItemFailure("M_NOT_FOUND", "The user's master key was not fetched");
  }
  if ("failure" in remote) throw new ItemFailure(remote.failure.errcode, remote.failure.error);
  const master = publicKeyOrNull(remote.key);
  if (master === null || item.keyId !== master) {
    // Their devices, or a master key their server no longer answers.
    throw new ItemFailure("M_NOT_FOUND", "Only the user's current master key can be signed");
  }
  requireSameContent(signed, remote.key);
  return await userSigningSignature(context, item, signed, master, userSigning);
}

/** The signer's user-signing signature on another user's master key `master`. */
async function userSigningSignature(
  context: PlanContext,
  item: SignatureUploadItem,
  signed: JsonObject,
  master: string,
  userSigning: string,
): Promise<CheckedItem> {
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
    expected: [{ userId: context.signer, usage: "user_signing", publicKey: userSigning }],
  };
}

/**
 * The current master keys of other servers' `users`, asked of their servers through `remote`
 * (each server once, at most SERVERS_IN_FLIGHT at a time, all within `timeoutMs`), checked to
 * be each user's master key. Every user gets an entry: the key, or the failure their items
 * report (M_NOT_FOUND, as Synapse answers when it cannot fetch a remote user's key).
 */
export async function fetchRemoteMasterKeys(
  remote: RemoteKeyQuerier | undefined,
  users: readonly string[],
  timeoutMs: number = REMOTE_MASTER_TIMEOUT_MS,
  now: () => number = Date.now,
): Promise<Map<string, RemoteMasterKey>> {
  const out = new Map<string, RemoteMasterKey>();
  const notFound = (error: string): RemoteMasterKey => ({
    failure: { errcode: "M_NOT_FOUND", error },
  });
  const byServer = new Map<string, Record<string, string[]>>();
  for (const userId of new Set(users)) {
    const parsed = parseUserId(userId);
    if (!parsed.ok) continue;
    const server = parsed.value.serverName;
    (byServer.get(server) ?? byServer.set(server, {}).get(server)!)[userId] = [];
  }
  // One deadline for the whole upload, however many servers it names: a server asked late
  // gets what is left of it, and one whose turn comes after it is not asked.
  const deadline = now() + timeoutMs;
  await mapLimited([...byServer], SERVERS_IN_FLIGHT, async ([server, query]) => {
    const unanswered = (why: string) => {
      for (const userId of Object.keys(query)) {
        out.set(userId, notFound(`The user's master key could not be fetched: ${why}`));
      }
    };
    if (remote === undefined) return unanswered("keys of other servers' users are not queried");
    const left = deadline - now();
    if (left <= 0) return unanswered(`${server} was not asked in time`);
    let result: RemoteKeyQueryResult | undefined;
    try {
      // The transport's deadline bounds each attempt; this one bounds the whole wait.
      result = await withDeadline(remote.query(server, query, left), left);
    } catch (error) {
      return unanswered(error instanceof Error ? error.message : String(error));
    }
    if (result === undefined) return unanswered(`${server} did not answer in time`);
    for (const userId of Object.keys(query)) {
      const key = result.master_keys?.[userId];
      if (key === undefined) {
        // A querier answering from its cache reports the users it could not reach this way.
        const failure = result.failure;
        out.set(
          userId,
          failure !== undefined && result.device_keys?.[userId] === undefined
            ? notFound(`The user's master key could not be fetched: ${String(failure.message)}`)
            : notFound("The user has no master key"),
        );
      } else if (isMasterKeyOf(key, userId)) {
        out.set(userId, { key });
      } else {
        out.set(userId, notFound("The user's server answered a malformed master key"));
      }
    }
  });
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
