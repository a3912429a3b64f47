/**
 * Remote memberships in KV (`userid_remotemembership`): one record per (user, room), its PDU
 * (with the stripped room state in `unsigned`) chunked when over one value, record and chunks
 * written in one commit, so a reader sees a whole record or the one before it. Every write bumps
 * a per-user guard key it checks, so the open-invite cap counted from the list is exact under
 * concurrent writers; leaves (rejected invites, withdrawn knocks) past REMOTE_LEAVE_RETENTION_MS
 * are not listed and are deleted by the user's next write, so the list a sync reads stays bounded.
 */
import { forbidden, MatrixError } from "../domain/errors.ts";
import type { Pdu } from "../domain/protocol/events.ts";
import type {
  RemoteMembership,
  RemoteMembershipLimits,
  RemoteMembershipStore,
} from "../domain/ports/remote_membership_store.ts";
import { decodeJson, encodeJson, readChunks, splitChunks } from "./chunked_value.ts";
import { remoteMembershipKeys } from "./schema.ts";
import { addWakes } from "./wake_keys.ts";

/** Most bytes a record's PDU and stripped state may take: well inside one commit's 800 KiB. */
export const MAX_REMOTE_MEMBERSHIP_BYTES = 512 * 1024;

/** How long a leave (rejected invite, withdrawn knock) stays listed: 30 days. */
export const REMOTE_LEAVE_RETENTION_MS = 30 * 24 * 60 * 60 * 1000;

/** Expired leaves deleted per write: keeps each commit well inside KV's mutation limit. */
const PRUNE_PER_WRITE = 20;

interface RemoteMembershipRecord {
  membership: string;
  eventId: string;
  roomVersion: string;
  servers: string[];
  /** The PDU's first chunk (UTF-8 JSON); the rest under `chunk` keys. */
  first: Uint8Array;
  chunks: number;
  /** When the record was written (ms); absent on records from before it was kept. */
  recordedAt?: number;
}

/** The KV implementation of the RemoteMembershipStore port. */
export class KvRemoteMembershipStore implements RemoteMembershipStore {
  /** Over an open KV database; `now` injectable so tests can age records without sleeping. */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** See RemoteMembershipStore.record. */
  async record(
    m: Omit<RemoteMembership, "versionstamp">,
    limits?: RemoteMembershipLimits,
  ): Promise<string> {
    const bytes = encodeJson(m.pdu);
    if (bytes.byteLength > MAX_REMOTE_MEMBERSHIP_BYTES) {
      throw new MatrixError("M_TOO_LARGE", 413, "The event and its room state are too large");
    }
    const chunks = splitChunks(bytes);
    const record: RemoteMembershipRecord = {
      membership: m.membership,
      eventId: m.eventId,
      roomVersion: m.roomVersion,
      servers: m.servers,
      first: chunks[0],
      chunks: chunks.length,
      recordedAt: this.now(),
    };
    const key = remoteMembershipKeys.membership(m.userId, m.roomId);
    const guardKey = remoteMembershipKeys.guard(m.userId);
    // Chunks of an older, longer record would be read as part of this one: clear them, in a
    // commit checked against the record they belong to and the user's guard (a concurrent
    // writer of any of the user's records retries, and counts again).
    for (let attempt = 0; attempt < 10; attempt++) {
      const guard = await this.kv.get<Deno.KvU64>(guardKey);
      const current = await this.kv.get(key);
      const atomic = this.kv.atomic().check(guard).check(current);
      const expired = await this.#sweep(m, limits);
      for (const roomId of expired) {
        const prefix = remoteMembershipKeys.chunkPrefix(m.userId, roomId);
        for await (const entry of this.kv.list({ prefix })) atomic.delete(entry.key);
        atomic.delete(remoteMembershipKeys.membership(m.userId, roomId));
      }
      const prefix = remoteMembershipKeys.chunkPrefix(m.userId, m.roomId);
      for await (const entry of this.kv.list({ prefix })) atomic.delete(entry.key);
      atomic.set(guardKey, new Deno.KvU64((guard.value?.value ?? 0n) + 1n));
      atomic.set(key, record);
      chunks.slice(1).forEach((chunk, i) =>
        atomic.set(remoteMembershipKeys.chunk(m.userId, m.roomId, i + 1), chunk)
      );
      // An invite (or its rejection) in a room we are not in shows in the user's own sync.
      addWakes(atomic, { userIds: [m.userId] });
      const result = await atomic.commit();
      if (result.ok) return result.versionstamp;
    }
    throw new MatrixError("M_UNKNOWN", 503, "The membership is being changed; try again");
  }

  /**
   * One read of the user's records for a write of `m`: refuses the write when it would take the
   * user past `limits.maxOpenInvites` open invites, and returns the rooms of expired leaves to
   * delete in the same commit (never `m`'s own room: the write replaces it).
   */
  async #sweep(
    m: Omit<RemoteMembership, "versionstamp">,
    limits: RemoteMembershipLimits | undefined,
  ): Promise<string[]> {
    const expired: string[] = [];
    let open = m.membership === "invite" ? 1 : 0;
    const prefix = remoteMembershipKeys.membershipPrefix(m.userId);
    for await (const entry of this.kv.list<RemoteMembershipRecord>({ prefix })) {
      const roomId = entry.key[entry.key.length - 1] as string;
      if (roomId === m.roomId) continue;
      if (entry.value.membership === "invite" && !limits?.settledRooms.has(roomId)) open++;
      if (this.#expired(entry.value) && expired.length < PRUNE_PER_WRITE) expired.push(roomId);
    }
    if (limits && m.membership === "invite" && open > limits.maxOpenInvites) {
      throw forbidden(
        `${m.userId} has too many pending invites (at most ${limits.maxOpenInvites}); ` +
          "they must accept or reject some first",
      );
    }
    return expired;
  }

  /** A leave past its retention: no longer listed, deleted by the next write. */
  #expired(record: RemoteMembershipRecord): boolean {
    return record.membership === "leave" && record.recordedAt !== undefined &&
      this.now() - record.recordedAt > REMOTE_LEAVE_RETENTION_MS;
  }

  /** See RemoteMembershipStore.get. */
  async get(userId: string, roomId: string): Promise<RemoteMembership | null> {
    const entry = await this.kv.get<RemoteMembershipRecord>(
      remoteMembershipKeys.membership(userId, roomId),
    );
    return entry.value === null
      ? null
      : await this.#decode(userId, roomId, entry.value, entry.versionstamp);
  }

  /** See RemoteMembershipStore.ofUser. */
  async ofUser(userId: string): Promise<RemoteMembership[]> {
    const out: RemoteMembership[] = [];
    const prefix = remoteMembershipKeys.membershipPrefix(userId);
    for await (const entry of this.kv.list<RemoteMembershipRecord>({ prefix })) {
      const roomId = entry.key[entry.key.length - 1] as string;
      if (this.#expired(entry.value)) continue;
      out.push(await this.#decode(userId, roomId, entry.value, entry.versionstamp));
    }
    return out;
  }

  async #decode(
    userId: string,
    roomId: string,
    record: RemoteMembershipRecord,
    versionstamp: string,
  ): Promise<RemoteMembership> {
    const bytes = await readChunks(
      this.kv,
      record.first,
      record.chunks,
      remoteMembershipKeys.chunkPrefix(userId, roomId),
    );
    return {
      userId,
      roomId,
      membership: record.membership,
      eventId: record.eventId,
      pdu: decodeJson<Pdu>(bytes),
      roomVersion: record.roomVersion,
      servers: record.servers,
      versionstamp,
    };
  }
}
