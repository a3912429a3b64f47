/**
 * Answering other servers about this server's users' keys (spec, Server-Server API:
 * "End-to-End Encryption"): `POST /user/keys/query`, `POST /user/keys/claim` and
 * `GET /user/devices/{userId}`.
 *
 * Only local users are answered: a remote user named in a query or claim is left out (we are
 * not the authority on their keys, and what we cache of them is not ours to vouch for). The
 * answers are the Client-Server ones as another server may see them: keys and the owners'
 * own signatures, never user-signing keys (private to their owner) nor other users'
 * verifications, and no device display names (Synapse's default,
 * `allow_device_name_lookup_over_federation: false`: a name such as "Alice's work laptop"
 * is not for every server sharing a room with Alice).
 */
import { invalidParam } from "../errors.ts";
import { parseUserId } from "../protocol/identifiers.ts";
import type { JsonObject } from "../protocol/json.ts";
import { addLocalUsers, type KeyQueryDeps, type KeyQueryResponse } from "../e2ee/key_query.ts";
import type { ClaimQuery, ClaimResponse } from "../e2ee/device_key_service.ts";

/** What the serving side reads. */
export interface ServerKeyQueriesDeps {
  /** The local key reads `/keys/query` uses. */
  keys: Omit<KeyQueryDeps, "remote">;
  /** Claims of local users' keys (DeviceKeyService.claim, only ever given local users). */
  claimLocal(query: ClaimQuery): Promise<ClaimResponse>;
  /** The user's device-list stream position (0 before any change). */
  deviceListStreamId(userId: string): Promise<number>;
}

/** `/user/keys/query`'s answer. */
export interface ServerKeyQueryResponse {
  device_keys: Record<string, Record<string, JsonObject>>;
  master_keys: Record<string, JsonObject>;
  self_signing_keys: Record<string, JsonObject>;
}

/** One entry of `/user/devices`' `devices`. */
export interface ServedDevice {
  device_id: string;
  keys: JsonObject;
}

/** `/user/devices/{userId}`'s answer. */
export interface ServedUserDevices {
  user_id: string;
  stream_id: number;
  devices: ServedDevice[];
  master_key?: JsonObject;
  self_signing_key?: JsonObject;
}

/** Serves key queries, claims and device lists of local users to other servers. */
export class ServerKeyQueries {
  /** Over the local key reads and claims in `deps`. */
  constructor(private readonly deps: ServerKeyQueriesDeps) {}

  /**
   * The keys of the local users in `query` (user ID -> device IDs, [] for all). Every local
   * user asked about appears in `device_keys`, with `{}` when they have no keys (as Synapse
   * answers); other servers' users are left out.
   */
  async query(query: Record<string, string[]>): Promise<ServerKeyQueryResponse> {
    const users = Object.keys(query).filter((userId) => this.#isLocal(userId));
    const response = await this.#localKeys(users, query);
    return {
      device_keys: response.device_keys,
      master_keys: response.master_keys,
      self_signing_keys: response.self_signing_keys,
    };
  }

  /**
   * Claim one key per named local device (user ID -> device ID -> algorithm), as a local
   * client's claim does. Other servers' users are left out; an invalid user ID is 400.
   */
  async claim(query: ClaimQuery): Promise<{ one_time_keys: ClaimResponse["one_time_keys"] }> {
    const local: ClaimQuery = {};
    for (const [userId, devices] of Object.entries(query)) {
      const parsed = parseUserId(userId);
      if (!parsed.ok) throw invalidParam(parsed.reason);
      if (parsed.value.serverName === this.deps.keys.serverName) local[userId] = devices;
    }
    const { one_time_keys } = await this.deps.claimLocal(local);
    return { one_time_keys };
  }

  /**
   * All of a local user's devices with keys, their master and self-signing keys, and the
   * device-list stream position they are current as of. Not a local user: 400 (the spec: "Must
   * be a user local to the receiving homeserver"); an unknown local user has no devices.
   */
  async userDevices(userId: string): Promise<ServedUserDevices> {
    if (!this.#isLocal(userId)) {
      throw invalidParam(`${userId} is not a user of this server`);
    }
    // The position is read before the devices: the answer is then at least as new as it
    // says, and an update the receiver later gets with a higher stream_id is applied again
    // (harmless), where the other order could claim a position the devices do not show yet.
    const streamId = await this.deps.deviceListStreamId(userId);
    const response = await this.#localKeys([userId], { [userId]: [] });
    const devices = Object.entries(response.device_keys[userId] ?? {}).map(
      ([deviceId, keys]): ServedDevice => {
        const { unsigned: _unsigned, ...signed } = keys;
        return { device_id: deviceId, keys: signed };
      },
    );
    const out: ServedUserDevices = { user_id: userId, stream_id: streamId, devices };
    const master = response.master_keys[userId];
    if (master !== undefined) out.master_key = master;
    const selfSigning = response.self_signing_keys[userId];
    if (selfSigning !== undefined) out.self_signing_key = selfSigning;
    return out;
  }

  async #localKeys(
    users: string[],
    query: Record<string, string[]>,
  ): Promise<KeyQueryResponse> {
    const response: KeyQueryResponse = {
      device_keys: Object.fromEntries(users.map((u) => [u, {}])),
      master_keys: {},
      self_signing_keys: {},
      user_signing_keys: {},
      failures: {},
    };
    await addLocalUsers(this.deps.keys, null, users, query, response, false);
    return response;
  }

  #isLocal(userId: string): boolean {
    const parsed = parseUserId(userId);
    return parsed.ok && parsed.value.serverName === this.deps.keys.serverName;
  }
}
