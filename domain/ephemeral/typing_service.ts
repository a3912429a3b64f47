/**
 * Typing notifications: who is typing in a room, until when. Each change rewrites the room's
 * small typing record (its versionstamp orders it with every other sync stream); a timer in
 * the process that wrote it clears typing that times out, so syncs see it stop, and the fleet's
 * typing expiry job (`expireDue`, leased: domain/jobs/background_jobs.ts) clears what a process
 * that died (or an isolate that was evicted) left. Local users' changes go to
 * the room's other servers through the `federation` hook; other servers' users are set by
 * `setRemoteTyping` (their EDU handler, domain/federation/edus/typing_edu.ts) and expire here
 * the same way.
 */
import type { EventReader } from "../ports/event_store.ts";
import type { TypingStore } from "../ports/typing_store.ts";
import { requireJoined } from "./membership_checks.ts";

/** Longest typing timeout honoured; clients refresh while the user keeps typing. */
export const MAX_TYPING_TIMEOUT_MS = 30_000;
/**
 * Other servers' users one server may have typing in one room at once, and the size of the
 * room's record past which no other server's user is added: a server can join any number of
 * its users to a public room, and without a bound their typing would fill the one record
 * (a KV value holds 64 KiB) until local users' typing failed to write.
 */
export const MAX_REMOTE_TYPING_PER_SERVER = 50;
/** See MAX_REMOTE_TYPING_PER_SERVER. */
export const MAX_TYPING_BYTES_FOR_REMOTE = 32 * 1024;

/** Rooms one `expireDue` run clears at most; the next run goes on. */
const EXPIRY_BATCH = 500;

/** A local user's typing as a client just set it, for the room's other servers. */
export interface LocalTypingChange {
  roomId: string;
  userId: string;
  typing: boolean;
  /** Whether the user was typing (unexpired) before this call. */
  wasTyping: boolean;
  /** How long the typing lasts from now (ms; 0 when it stopped). */
  timeoutMs: number;
}

/** Tells other servers about local users' typing (federation: typing_edu.ts). */
export interface TypingFederation {
  /** After every committed `setTyping`; the hook decides what to send. Never rejects. */
  typingChanged(change: LocalTypingChange): Promise<void>;
}

/** What the service is built from. */
export interface TypingServiceDeps {
  store: TypingStore;
  events: Pick<EventReader, "currentStateEventId" | "getEvent">;
  notifyRoom?: (roomId: string) => void;
  /** Where local users' typing goes to other servers; absent without federation. */
  federation?: TypingFederation;
  now?: () => number;
}

/** Sets and expires typing. */
export class TypingService {
  /** Earliest expiry per room that this process has yet to clear. */
  readonly #expiries = new Map<string, number>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  /** Build over a store and the event reader (membership checks). */
  constructor(private readonly deps: TypingServiceDeps) {}

  /** `PUT /rooms/{roomId}/typing/{userId}` for a joined (local) user. */
  async setTyping(userId: string, roomId: string, typing: boolean, timeoutMs = 30_000) {
    await requireJoined(this.deps.events, roomId, userId);
    const lasts = Math.min(Math.max(timeoutMs, 0), MAX_TYPING_TIMEOUT_MS);
    const wasTyping = await this.#write(userId, roomId, typing, lasts);
    await this.deps.federation?.typingChanged({
      roomId,
      userId,
      typing,
      wasTyping,
      timeoutMs: typing ? lasts : 0,
    });
  }

  /**
   * Another server's user started or stopped typing (its EDU handler checked that the server
   * speaks for the user and the user is joined); it lasts `timeoutMs` unless stopped sooner.
   * Never sent on to other servers: each server tells the others about its own users. A start
   * past the room's bounds on other servers' typing (`remoteRoomFor`) is dropped.
   */
  async setRemoteTyping(
    userId: string,
    roomId: string,
    typing: boolean,
    timeoutMs: number,
  ): Promise<void> {
    await this.#write(userId, roomId, typing, Math.max(timeoutMs, 0), remoteRoomFor);
  }

  /**
   * `userId` stopped being joined to `roomId` (left, kicked, banned): their typing there ends now
   * rather than at its expiry, and for a local user the room's other servers are told (Synapse
   * does the same). Nothing is written when they were not typing.
   */
  async membershipEnded(userId: string, roomId: string, local: boolean): Promise<void> {
    const wasTyping = await this.#write(userId, roomId, false, 0);
    if (!local || !wasTyping) return;
    await this.deps.federation?.typingChanged({
      roomId,
      userId,
      typing: false,
      wasTyping,
      timeoutMs: 0,
    });
  }

  /**
   * Write one user's typing (waking the room's syncs); whether they were typing before. A start
   * `admits` refuses is dropped (nothing written).
   */
  async #write(
    userId: string,
    roomId: string,
    typing: boolean,
    lasts: number,
    admits?: (users: Record<string, number>, userId: string) => boolean,
  ): Promise<boolean> {
    const now = this.#now();
    const expiry = now + lasts;
    let wasTyping = false;
    let refused = false;
    const written = await this.deps.store.update(roomId, (users) => {
      wasTyping = (users[userId] ?? 0) > now;
      pruneExpired(users, now);
      refused = typing && !wasTyping && admits !== undefined && !admits(users, userId);
      if (refused) return null;
      if (typing) users[userId] = expiry;
      else if (!wasTyping) return null;
      else delete users[userId];
      return users;
    });
    if (written !== null) this.deps.notifyRoom?.(roomId);
    if (typing && !refused) this.#schedule(roomId, expiry);
    return wasTyping;
  }

  /**
   * Clear expired typing in every room where some has expired, whoever wrote it: the timer
   * covers only this process's writes, and dies with the process. Run by the fleet's leased
   * typing expiry job. Returns the rooms cleared; stops between rooms once `signal` aborts.
   */
  async expireDue(signal?: AbortSignal): Promise<number> {
    const now = this.#now();
    let cleared = 0;
    for (const roomId of await this.deps.store.roomsDue(now, EXPIRY_BATCH)) {
      if (signal?.aborted) break;
      const written = await this.deps.store.update(
        roomId,
        (users) => pruneExpired(users, now) ? users : null,
      );
      if (written === null) continue;
      cleared++;
      this.deps.notifyRoom?.(roomId);
    }
    return cleared;
  }

  /** Cancel the expiry timer (tests, shutdown). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(roomId: string, expiry: number): void {
    if (this.#stopped) return;
    const known = this.#expiries.get(roomId);
    if (known === undefined || expiry < known) this.#expiries.set(roomId, expiry);
    this.#arm();
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#expiries.size === 0 || this.#stopped) return;
    const next = Math.min(...this.#expiries.values());
    this.#timer = setTimeout(() => this.#sweep(), Math.max(0, next - this.#now()) + 5);
  }

  async #sweep(): Promise<void> {
    this.#timer = undefined;
    const now = this.#now();
    const due = [...this.#expiries].filter(([, at]) => at <= now).map(([roomId]) => roomId);
    for (const roomId of due) this.#expiries.delete(roomId);
    await Promise.all(due.map(async (roomId) => {
      try {
        let later: number | undefined;
        const written = await this.deps.store.update(roomId, (users) => {
          const removed = pruneExpired(users, now);
          const remaining = Object.values(users);
          if (remaining.length > 0) later = Math.min(...remaining);
          return removed ? users : null;
        });
        if (written !== null) this.deps.notifyRoom?.(roomId);
        if (later !== undefined) this.#schedule(roomId, later);
      } catch (error) {
        console.warn("typing: expiry failed", roomId, error);
      }
    }));
    this.#arm();
  }

  #now(): number {
    return this.deps.now?.() ?? Date.now();
  }
}

/**
 * Whether another server's `userId`, not typing yet, may be added to a room's (unexpired)
 * typing `users`: their server has fewer than MAX_REMOTE_TYPING_PER_SERVER typing there and
 * the record is within MAX_TYPING_BYTES_FOR_REMOTE (the rest of a KV value stays for local users).
 */
export function remoteRoomFor(users: Record<string, number>, userId: string): boolean {
  const server = userId.slice(userId.indexOf(":") + 1);
  let sameServer = 0;
  let bytes = 0;
  for (const typingUser of Object.keys(users)) {
    if (typingUser.slice(typingUser.indexOf(":") + 1) === server) sameServer++;
    // A KV value stores a string in one or two bytes per character, a number in nine.
    bytes += 2 * typingUser.length + 16;
  }
  return sameServer < MAX_REMOTE_TYPING_PER_SERVER &&
    bytes + 2 * userId.length + 16 <= MAX_TYPING_BYTES_FOR_REMOTE;
}

/** Drop users whose typing has expired; true when any was dropped. */
export function pruneExpired(users: Record<string, number>, now: number): boolean {
  let removed = false;
  for (const [userId, expiry] of Object.entries(users)) {
    if (expiry <= now) {
      delete users[userId];
      removed = true;
    }
  }
  return removed;
}
