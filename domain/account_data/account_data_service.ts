/**
 * Account data: global and per-room JSON objects a user keeps on the server, room tags (stored
 * as `m.tag` room account data) and the read marker (`m.fully_read`). Each write wakes the
 * user's syncs.
 */
import { forbidden, invalidParam, MatrixError, notFound, tooLarge } from "../errors.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { AccountDataStore } from "../ports/account_data_store.ts";
import { checkAccountDataQuota } from "./account_data_quota.ts";

/** Largest account data object, in bytes of JSON: one KV value. */
export const MAX_ACCOUNT_DATA_BYTES = 60_000;
/** Longest account data type or tag name, in bytes. */
export const MAX_TYPE_BYTES = 255;

/** Types only the server writes: the read marker goes through /read_markers, push rules /pushrules. */
const SERVER_MANAGED_TYPES = new Set(["m.fully_read", "m.push_rules"]);
const encoder = new TextEncoder();

/** What the service is built from. */
export interface AccountDataServiceDeps {
  store: AccountDataStore;
  /** Wakes the user's long-polling syncs after a write. */
  notifyUser?: (userId: string) => void;
}

/** Account data reads and writes for one user at a time. */
export class AccountDataService {
  /** Build over a store. */
  constructor(private readonly deps: AccountDataServiceDeps) {}

  /** One entry as `requester`; M_NOT_FOUND when unset, M_FORBIDDEN for someone else's. */
  async get(
    requester: string,
    userId: string,
    roomId: string | null,
    type: string,
  ): Promise<JsonObject> {
    checkOwner(requester, userId);
    const content = await this.deps.store.get(userId, roomId, type);
    if (content === null) throw notFound("Account data not found");
    return content;
  }

  /** Set one entry as `requester`; server-managed types are refused. */
  async put(
    requester: string,
    userId: string,
    roomId: string | null,
    type: string,
    content: JsonObject,
  ): Promise<void> {
    checkOwner(requester, userId);
    checkType(type);
    if (SERVER_MANAGED_TYPES.has(type)) {
      // The spec pairs 405 with M_BAD_JSON for server-managed types.
      throw new MatrixError("M_BAD_JSON", 405, `Cannot set ${type} through this API`);
    }
    await this.write(userId, roomId, type, content);
  }

  /** Write without the client-facing checks (read markers, push rules, tags). */
  async write(
    userId: string,
    roomId: string | null,
    type: string,
    content: JsonObject,
  ): Promise<void> {
    if (encoder.encode(JSON.stringify(content)).byteLength > MAX_ACCOUNT_DATA_BYTES) {
      throw tooLarge(`Account data is over ${MAX_ACCOUNT_DATA_BYTES} bytes`);
    }
    // The caps on types and total bytes are checked in the write's own commit.
    await this.deps.store.put(userId, roomId, type, content, checkAccountDataQuota);
    this.deps.notifyUser?.(userId);
  }

  /** A room's tags as `{tags: {...}}`. */
  async tags(requester: string, userId: string, roomId: string): Promise<JsonObject> {
    checkOwner(requester, userId);
    const content = await this.deps.store.get(userId, roomId, "m.tag");
    return { tags: tagsOf(content) };
  }

  /** Add or replace a tag with its content (`order`, ...). */
  async putTag(
    requester: string,
    userId: string,
    roomId: string,
    tag: string,
    content: JsonObject,
  ): Promise<void> {
    checkOwner(requester, userId);
    if (tag === "" || encoder.encode(tag).byteLength > MAX_TYPE_BYTES) {
      throw invalidParam("Tag names must be 1 to 255 bytes");
    }
    const tags = tagsOf(await this.deps.store.get(userId, roomId, "m.tag"));
    await this.write(userId, roomId, "m.tag", { tags: { ...tags, [tag]: content } });
  }

  /** Remove a tag; removing a missing tag succeeds. */
  async deleteTag(requester: string, userId: string, roomId: string, tag: string): Promise<void> {
    checkOwner(requester, userId);
    const tags = tagsOf(await this.deps.store.get(userId, roomId, "m.tag"));
    if (!(tag in tags)) return;
    delete tags[tag];
    await this.write(userId, roomId, "m.tag", { tags });
  }

  /** Move the user's read marker in a room. */
  async setFullyRead(userId: string, roomId: string, eventId: string): Promise<void> {
    await this.write(userId, roomId, "m.fully_read", { event_id: eventId });
  }

  /**
   * Carry a user's view of an upgraded room over to its replacement, as Synapse does: a direct
   * chat stays one (`m.direct` lists the new room beside the old) and the room's tags follow.
   */
  async copyOnRoomUpgrade(userId: string, oldRoomId: string, newRoomId: string): Promise<void> {
    const direct = await this.deps.store.get(userId, null, "m.direct");
    if (direct !== null) {
      const copy: JsonObject = { ...direct };
      let changed = false;
      for (const [partner, rooms] of Object.entries(direct)) {
        if (Array.isArray(rooms) && rooms.includes(oldRoomId) && !rooms.includes(newRoomId)) {
          copy[partner] = [...rooms, newRoomId];
          changed = true;
        }
      }
      if (changed) await this.write(userId, null, "m.direct", copy);
    }
    const tags = tagsOf(await this.deps.store.get(userId, oldRoomId, "m.tag"));
    if (Object.keys(tags).length > 0) {
      const current = tagsOf(await this.deps.store.get(userId, newRoomId, "m.tag"));
      await this.write(userId, newRoomId, "m.tag", { tags: { ...tags, ...current } });
    }
  }
}

function checkOwner(requester: string, userId: string): void {
  if (requester !== userId) throw forbidden("Cannot access another user's account data");
}

function checkType(type: string): void {
  if (type === "" || encoder.encode(type).byteLength > MAX_TYPE_BYTES) {
    throw invalidParam("Account data types must be 1 to 255 bytes");
  }
}

function tagsOf(content: JsonObject | null): JsonObject {
  const tags = content?.tags;
  return tags !== null && typeof tags === "object" && !Array.isArray(tags) ? { ...tags } : {};
}
