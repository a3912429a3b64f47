/** The Deno KV implementation of the RoomDirectoryStore port: aliases, published rooms, forgotten rooms. */
import type { CommitMutation } from "../domain/ports/event_store.ts";
import type {
  AliasRecord,
  RoomDirectoryStore,
  RoomVisibility,
} from "../domain/ports/room_directory_store.ts";
import {
  aliasRoomIdKey,
  roomIdAliasKey,
  roomIdPublishedKey,
  userRoomIdForgottenKey,
} from "./schema.ts";

/** Our keys hold only strings, so they fit the port's key type. */
type PortKey = CommitMutation["key"];
const portKey = (key: Deno.KvKey): PortKey => key as PortKey;

interface AliasValue {
  room_id: string;
  creator: string;
}

/** Aliases, directory visibility and forgotten rooms in Deno KV. */
export class KvRoomDirectoryStore implements RoomDirectoryStore {
  constructor(private readonly kv: Deno.Kv) {}

  /** See RoomDirectoryStore.resolveAlias. */
  async resolveAlias(alias: string): Promise<AliasRecord | null> {
    const entry = await this.kv.get<AliasValue>(aliasRoomIdKey(alias));
    if (!entry.value) return null;
    return { alias, roomId: entry.value.room_id, creator: entry.value.creator };
  }

  /** See RoomDirectoryStore.aliasesOfRoom. */
  async aliasesOfRoom(roomId: string): Promise<string[]> {
    const aliases: string[] = [];
    for await (const entry of this.kv.list({ prefix: roomIdAliasKey(roomId) })) {
      aliases.push(String(entry.key[entry.key.length - 1]));
    }
    return aliases;
  }

  /** See RoomDirectoryStore.createAlias. */
  createAlias(record: AliasRecord): Promise<boolean> {
    return this.commit(this.createAliasMutations(record));
  }

  /** See RoomDirectoryStore.createAliasMutations. */
  createAliasMutations(record: AliasRecord): CommitMutation[] {
    const value: AliasValue = { room_id: record.roomId, creator: record.creator };
    return [
      { op: "check", key: portKey(aliasRoomIdKey(record.alias)), versionstamp: null },
      { op: "set", key: portKey(aliasRoomIdKey(record.alias)), value },
      { op: "set", key: portKey(roomIdAliasKey(record.roomId, record.alias)), value: true },
    ];
  }

  /** See RoomDirectoryStore.deleteAliasMutations. */
  deleteAliasMutations(record: AliasRecord): CommitMutation[] {
    return [
      { op: "delete", key: portKey(aliasRoomIdKey(record.alias)) },
      { op: "delete", key: portKey(roomIdAliasKey(record.roomId, record.alias)) },
    ];
  }

  /** See RoomDirectoryStore.deleteAlias. */
  async deleteAlias(alias: string): Promise<boolean> {
    const entry = await this.kv.get<AliasValue>(aliasRoomIdKey(alias));
    if (!entry.value) return false;
    const res = await this.kv.atomic()
      .check(entry)
      .delete(aliasRoomIdKey(alias))
      .delete(roomIdAliasKey(entry.value.room_id, alias))
      .commit();
    return res.ok;
  }

  /** See RoomDirectoryStore.commit. */
  async commit(mutations: CommitMutation[]): Promise<boolean> {
    const op = this.kv.atomic();
    for (const m of mutations) {
      if (m.op === "check") op.check({ key: m.key as Deno.KvKey, versionstamp: m.versionstamp });
      else if (m.op === "set") op.set(m.key as Deno.KvKey, m.value);
      else op.delete(m.key as Deno.KvKey);
    }
    return (await op.commit()).ok;
  }

  /** See RoomDirectoryStore.visibility. */
  async visibility(roomId: string): Promise<RoomVisibility> {
    const entry = await this.kv.get(roomIdPublishedKey(roomId));
    return entry.value ? "public" : "private";
  }

  /** See RoomDirectoryStore.visibilityMutations. */
  visibilityMutations(roomId: string, visibility: RoomVisibility): CommitMutation[] {
    return visibility === "public"
      ? [{ op: "set", key: portKey(roomIdPublishedKey(roomId)), value: true }]
      : [{ op: "delete", key: portKey(roomIdPublishedKey(roomId)) }];
  }

  /** See RoomDirectoryStore.publishedRooms. */
  async publishedRooms(): Promise<string[]> {
    const rooms: string[] = [];
    for await (const entry of this.kv.list({ prefix: roomIdPublishedKey() })) {
      rooms.push(String(entry.key[entry.key.length - 1]));
    }
    return rooms;
  }

  /** See RoomDirectoryStore.isForgotten. */
  async isForgotten(userId: string, roomId: string): Promise<boolean> {
    const entry = await this.kv.get(userRoomIdForgottenKey(userId, roomId));
    return entry.value !== null;
  }

  /** See RoomDirectoryStore.forgottenMutations. */
  forgottenMutations(userId: string, roomId: string, forgotten: boolean): CommitMutation[] {
    const key = portKey(userRoomIdForgottenKey(userId, roomId));
    return forgotten ? [{ op: "set", key, value: true }] : [{ op: "delete", key }];
  }
}
