/**
 * The storage port for room aliases, the published room directory and forgotten rooms: records
 * that are not room events. Writes that must land with an event are returned as mutations so
 * they can ride in that event's commit (`extraMutations`).
 */
import type { CommitMutation } from "./event_store.ts";

/** A local alias and who made it (the creator may delete it). */
export interface AliasRecord {
  alias: string;
  roomId: string;
  creator: string;
}

/** Room directory visibility, as in `/directory/list/room`. */
export type RoomVisibility = "public" | "private";

/** Aliases, directory visibility and forgotten rooms. */
export interface RoomDirectoryStore {
  /** The room an alias points at; null when unknown. */
  resolveAlias(alias: string): Promise<AliasRecord | null>;
  /** The local aliases of a room, sorted. */
  aliasesOfRoom(roomId: string): Promise<string[]>;
  /** Create an alias unless it exists; false when it was taken. */
  createAlias(record: AliasRecord): Promise<boolean>;
  /** The writes that create an alias, with a check that fails the commit when it is taken. */
  createAliasMutations(record: AliasRecord): CommitMutation[];
  /** The writes that remove an alias. */
  deleteAliasMutations(record: AliasRecord): CommitMutation[];
  /** Delete an alias; false when it did not exist. */
  deleteAlias(alias: string): Promise<boolean>;
  /** Apply mutations in one commit of their own (no event); false when a check failed. */
  commit(mutations: CommitMutation[]): Promise<boolean>;

  /** Whether the room is published in the public room directory. */
  visibility(roomId: string): Promise<RoomVisibility>;
  /** The writes that publish or unpublish a room. */
  visibilityMutations(roomId: string, visibility: RoomVisibility): CommitMutation[];
  /** Every published room, in a stable order. */
  publishedRooms(): Promise<string[]>;

  /** Whether the user forgot the room. */
  isForgotten(userId: string, roomId: string): Promise<boolean>;
  /** The writes that mark a room forgotten by a user, or clear the mark. */
  forgottenMutations(userId: string, roomId: string, forgotten: boolean): CommitMutation[];
}
