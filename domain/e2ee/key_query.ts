/**
 * /keys/query (spec: "Download device identity keys"): the queried users' device keys and
 * cross-signing keys, with uploaded signatures merged in as the requester may see them.
 *
 * Visibility follows the spec and Synapse: a master key carries its owner's device signatures
 * for everyone, and the requester's own user-signing signature only for the requester (other
 * users' verifications of someone are private); user-signing keys go only to their owner. Only
 * signatures by a signer's current key are shown, so replaced keys leave nothing stale behind.
 * Other servers' users' master keys come from their servers (or our cache of them) and carry
 * the requester's own signatures from here, on the key answered now (addRequesterSignatures).
 */
import { mapLimited, withDeadline } from "../concurrency.ts";
import { parseUserId } from "../protocol/identifiers.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import type { DeviceKeyReader } from "../ports/device_key_store.ts";
import type {
  CrossSigningKeySet,
  CrossSigningStore,
  UploadedSignature,
} from "../ports/cross_signing_store.ts";
import { publicKeyOrNull, withSignatures } from "./cross_signing_keys.ts";

/** The default and the longest wait for remote servers (the spec recommends 10 s). */
export const KEY_QUERY_TIMEOUT = { defaultMs: 10_000, maxMs: 20_000 } as const;

/** A /keys/query response. */
export interface KeyQueryResponse {
  device_keys: Record<string, Record<string, JsonObject>>;
  master_keys: Record<string, JsonObject>;
  self_signing_keys: Record<string, JsonObject>;
  user_signing_keys: Record<string, JsonObject>;
  failures: Record<string, JsonObject>;
}

/** What a remote server answers for its users (federation's /user/keys/query). */
export interface RemoteKeyQueryResult {
  device_keys?: Record<string, Record<string, JsonObject>>;
  master_keys?: Record<string, JsonObject>;
  self_signing_keys?: Record<string, JsonObject>;
  /**
   * Set by a querier that answered some users (from a cache) but could not reach the server
   * for others: reported in `failures` beside what was answered.
   */
  failure?: JsonObject;
}

/**
 * Asks another server for its users' keys. The federation issue provides one; without it,
 * remote servers are reported in `failures`.
 */
export interface RemoteKeyQuerier {
  query(
    serverName: string,
    deviceKeys: Record<string, string[]>,
    timeoutMs: number,
  ): Promise<RemoteKeyQueryResult>;
}

/** A device as the accounts area knows it. */
export interface KnownDevice {
  deviceId: string;
  displayName?: string;
}

/** What a query reads. */
export interface KeyQueryDeps {
  store: Pick<CrossSigningStore, "keysOf" | "signaturesBy">;
  deviceKeys: DeviceKeyReader;
  /** The user's current devices; keys of devices deleted meanwhile are not shown. */
  devicesOf(userId: string): Promise<KnownDevice[]>;
  serverName: string;
  remote?: RemoteKeyQuerier;
}

/** Per-user reads run this many users at a time. */
const USER_READ_CONCURRENCY = 32;

/** The requested timeout bounded to [0, max]; the default when absent. */
export function boundedKeyQueryTimeout(timeout: number | undefined): number {
  if (timeout === undefined || !Number.isFinite(timeout)) return KEY_QUERY_TIMEOUT.defaultMs;
  return Math.min(Math.max(0, Math.floor(timeout)), KEY_QUERY_TIMEOUT.maxMs);
}

/** Answer `requester`'s query for `query` (user ID -> device IDs, or [] for all devices). */
export async function queryKeys(
  deps: KeyQueryDeps,
  requester: string,
  query: Record<string, string[]>,
  timeoutMs: number,
): Promise<KeyQueryResponse> {
  const response: KeyQueryResponse = {
    device_keys: {},
    master_keys: {},
    self_signing_keys: {},
    user_signing_keys: {},
    failures: {},
  };
  const local: string[] = [];
  const remote = new Map<string, Record<string, string[]>>();
  for (const [userId, deviceIds] of Object.entries(query)) {
    const parsed = parseUserId(userId);
    if (!parsed.ok) continue;
    const server = parsed.value.serverName;
    if (server === deps.serverName) local.push(userId);
    else (remote.get(server) ?? remote.set(server, {}).get(server)!)[userId] = deviceIds;
  }
  await Promise.all([
    addLocalUsers(deps, requester, local, query, response),
    (async () => {
      await Promise.all(
        [...remote].map(([server, users]) =>
          addRemoteServer(deps, server, users, timeoutMs, response)
        ),
      );
      const remoteUsers = [...remote.values()].flatMap((users) => Object.keys(users));
      await addRequesterSignatures(deps, requester, remoteUsers, response);
    })(),
  ]);
  return response;
}

/**
 * Add the keys of local `users` (queried as in `query`) to `response`, as `requester` may see
 * them; a null requester is another server (federation's /user/keys/query and
 * /user/devices), which sees only what the owners signed, no user-signing keys, and, when
 * `displayNames` is false, no device display names.
 */
export async function addLocalUsers(
  deps: Omit<KeyQueryDeps, "remote">,
  requester: string | null,
  users: string[],
  query: Record<string, string[]>,
  response: KeyQueryResponse,
  displayNames = true,
): Promise<void> {
  if (users.length === 0) return;
  const readers = requester === null ? users : [...new Set([...users, requester])];
  const keys = await deps.store.keysOf(readers);
  const [deviceKeys, perUser] = await Promise.all([
    deps.deviceKeys.deviceKeys(new Map(users.map((u) => [u, query[u]]))),
    mapLimited(users, USER_READ_CONCURRENCY, async (userId) => ({
      devices: await deps.devicesOf(userId),
      // Only the owner's and the requester's signatures can be shown; a user verified by
      // thousands must not cost thousands of reads per query.
      signatures: await deps.store.signaturesBy(
        userId,
        requester === null ? [userId] : [userId, requester],
        publicKeyOrNull(keys.get(userId)?.master),
      ),
    })),
  ]);
  const requesterUserSigning = requester === null
    ? null
    : publicKeyOrNull(keys.get(requester)?.user_signing);
  users.forEach((userId, i) => {
    const own = keys.get(userId) ?? {};
    const { devices, signatures } = perUser[i];
    const selfSigning = publicKeyOrNull(own.self_signing);
    const byDevice = Object.fromEntries(devices.map((d) => [d.deviceId, d]));
    const out: Record<string, JsonObject> = {};
    for (const [deviceId, stored] of deviceKeys.get(userId) ?? []) {
      const device = byDevice[deviceId];
      if (device === undefined) continue;
      // Devices are signed only by their owner's current self-signing key.
      const signed = withSignatures(
        stored,
        signatures.filter((s) =>
          s.targetKeyId === deviceId && s.signerUserId === userId &&
          selfSigning !== null && s.signerKeyId === `ed25519:${selfSigning}`
        ),
      );
      const unsigned: JsonObject = {};
      if (device.displayName !== undefined && displayNames) {
        unsigned.device_display_name = device.displayName;
      }
      out[deviceId] = { ...signed, unsigned };
    }
    response.device_keys[userId] = out;
    addCrossSigningKeys(response, requester, requesterUserSigning, userId, own, signatures);
  });
}

function addCrossSigningKeys(
  response: KeyQueryResponse,
  requester: string | null,
  requesterUserSigning: string | null,
  userId: string,
  own: CrossSigningKeySet,
  signatures: UploadedSignature[],
): void {
  const master = publicKeyOrNull(own.master);
  if (own.master !== undefined) {
    const visible = signatures.filter((s) => {
      if (s.targetKeyId !== master) return false;
      if (s.signerUserId === userId) return true; // the owner's devices
      return s.signerUserId === requester && requesterUserSigning !== null &&
        s.signerKeyId === `ed25519:${requesterUserSigning}`;
    });
    response.master_keys[userId] = withSignatures(own.master, visible);
  }
  if (own.self_signing !== undefined) response.self_signing_keys[userId] = own.self_signing;
  if (userId === requester && own.user_signing !== undefined) {
    response.user_signing_keys[userId] = own.user_signing;
  }
}

/**
 * The requester's own verifications of other servers' `users`: signatures by the requester's
 * current user-signing key on the master key each user's server answered (from the remote
 * device cache or asked just now), stored here when uploaded (they are the requester's alone,
 * never sent to that server, as in Synapse). Whatever the other server put on that key under
 * the name of any user of ours is dropped first: our users' signatures of other users are held
 * only here (never sent over federation), so a client must not read one we did not check.
 */
async function addRequesterSignatures(
  deps: KeyQueryDeps,
  requester: string,
  users: string[],
  response: KeyQueryResponse,
): Promise<void> {
  const withMaster = users.filter((u) => response.master_keys[u] !== undefined);
  if (withMaster.length === 0) return;
  for (const userId of withMaster) {
    response.master_keys[userId] = withoutSignaturesOf(
      response.master_keys[userId],
      deps.serverName,
    );
  }
  const own = (await deps.store.keysOf([requester])).get(requester);
  const userSigning = publicKeyOrNull(own?.user_signing);
  if (userSigning === null) return;
  await mapLimited(withMaster, USER_READ_CONCURRENCY, async (userId) => {
    const master = response.master_keys[userId];
    let masterKey: string | null;
    try {
      masterKey = publicKeyOrNull(master);
    } catch {
      return; // not a key object: nothing of ours can be on it
    }
    if (masterKey === null) return;
    // Read at the master key answered now: signatures on a key it replaced are not read.
    const signatures = await deps.store.signaturesBy(userId, [requester], masterKey);
    const visible = signatures.filter((s) =>
      s.targetKeyId === masterKey && s.signerUserId === requester &&
      s.signerKeyId === `ed25519:${userSigning}`
    );
    response.master_keys[userId] = withSignatures(master, visible);
  });
}

/** A copy of `key` without the signatures of `serverName`'s users (itself when it has none). */
function withoutSignaturesOf(key: JsonObject, serverName: string): JsonObject {
  const signatures = key.signatures;
  if (!isJsonObject(signatures)) return key;
  const ours = (userId: string) => {
    const parsed = parseUserId(userId);
    return parsed.ok && parsed.value.serverName === serverName;
  };
  if (!Object.keys(signatures).some(ours)) return key;
  return {
    ...key,
    signatures: Object.fromEntries(Object.entries(signatures).filter(([u]) => !ours(u))),
  };
}

async function addRemoteServer(
  deps: KeyQueryDeps,
  server: string,
  users: Record<string, string[]>,
  timeoutMs: number,
  response: KeyQueryResponse,
): Promise<void> {
  if (deps.remote === undefined) {
    response.failures[server] = {
      status: 503,
      message: "Querying keys on other servers is not supported yet",
    };
    return;
  }
  try {
    // The transport's deadline bounds each attempt; this one bounds the whole wait.
    const result = await withDeadline(deps.remote.query(server, users, timeoutMs), timeoutMs);
    if (result === undefined) {
      response.failures[server] = { status: 504, message: `${server} did not answer in time` };
      return;
    }
    for (const userId of Object.keys(users)) {
      const devices = result.device_keys?.[userId];
      if (devices !== undefined) response.device_keys[userId] = devices;
      const master = result.master_keys?.[userId];
      if (master !== undefined) response.master_keys[userId] = master;
      const selfSigning = result.self_signing_keys?.[userId];
      if (selfSigning !== undefined) response.self_signing_keys[userId] = selfSigning;
    }
    if (result.failure !== undefined) response.failures[server] = result.failure;
  } catch (error) {
    response.failures[server] = {
      status: 503,
      message: error instanceof Error ? error.message : String(error),
    };
  }
}
