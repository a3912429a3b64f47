/**
 * Remote memberships in KV (`userid_remotemembership`): one record per (user, room), its PDU
 * (with the stripped room state in `unsigned`) chunked when over one value, record and chunks
 * written in one commit, so a reader sees a whole record or the one before it.
 */
import { MatrixError } from "../domain/errors.ts";
import type { Pdu } from "../domain/protocol/events.ts";
import type {
  RemoteMembership,
  RemoteMembershipStore,
} from "../domain/ports/remote_membership_store.ts";
import { decodeJson, encodeJson, readChunks, splitChunks } from "./chunked_value.ts";
import { remoteMembershipKeys } from "./schema.ts";

/** Most bytes a record's PDU and stripped state may take: well inside one commit's 800 KiB. */
export const MAX_REMOTE_MEMBERSHIP_BYTES = 512 * 1024;

interface RemoteMembershipRecord {
  membership: string;
  eventId: string;
  roomVersion: string;
  servers: string[];
  /** The PDU's first chunk (UTF-8 JSON); the rest under `chunk` keys. */
  first: Uint8Array;
  chunks: number;
}

/** The KV implementation of the RemoteMembershipStore port. */
export class KvRemoteMembershipStore implements RemoteMembershipStore {
  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See RemoteMembershipStore.record. */
  async record(m: Omit<RemoteMembership, "versionstamp">): Promise<string> {
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
    };
    const key = remoteMembershipKeys.membership(m.userId, m.roomId);
    // Chunks of an older, longer record would be read as part of this one: clear them, in a
    // commit checked against the record they belong to (a concurrent writer retries).
    for (let attempt = 0; attempt < 10; attempt++) {
      const current = await this.kv.get(key);
      const atomic = this.kv.atomic().check(current);
      const prefix = remoteMembershipKeys.chunkPrefix(m.userId, m.roomId);
      for await (const entry of this.kv.list({ prefix })) atomic.delete(entry.key);
      atomic.set(key, record);
      chunks.slice(1).forEach((chunk, i) =>
        atomic.set(remoteMembershipKeys.chunk(m.userId, m.roomId, i + 1), chunk)
      );
      const result = await atomic.commit();
      if (result.ok) return result.versionstamp;
    }
    throw new MatrixError("M_UNKNOWN", 503, "The membership is being changed; try again");
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
