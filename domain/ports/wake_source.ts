/**
 * Wake-ups across processes. A writer bumps a wake key (kv/wake_keys.ts) in the same commit as
 * a change; a waiter in any process subscribes to the keys it cares about and is called with
 * the versionstamp of the commit that moved one of them. Adapters: `kv.watch` (Deno Deploy,
 * where watch crosses isolates), a poll of the keys (local processes sharing one KV file, where
 * watch does not cross processes), or none (one process: the in-process notifiers suffice).
 */

/** What a wake key belongs to; kv/schema.ts's `wakeKeys` builds the key of each. */
export type WakeTopic =
  | { kind: "user"; userId: string }
  | { kind: "room"; roomId: string }
  | { kind: "outbox"; stream: string };

/** How wake-ups cross processes (`TESSERA_WAKE`). */
export type WakeMode = "watch" | "poll" | "local";

/** Called with the versionstamp (20 hex digits) of a commit that bumped a watched key. */
export type OnWake = (versionstamp: string) => void;

/** Cross-process wake-ups; see the module comment. */
export interface WakeSource {
  readonly mode: WakeMode;
  /**
   * Call `onWake` whenever one of `topics` is bumped by a commit whose versionstamp is newer
   * than `after` (at once, asynchronously, if one already is). Synchronous: a sync registers it
   * before it reads, with `after` = the position it has read up to. Returns an unsubscribe.
   */
  watchAfter(topics: readonly WakeTopic[], after: string, onWake: OnWake): () => void;
  /**
   * Call `onWake` whenever one of `topics` is bumped after the subscription's first look at
   * them; resolves once that look is done, so a pass the caller makes afterwards plus the wakes
   * cover every change. For loops without a position of their own (the outbox workers).
   */
  watchFromNow(topics: readonly WakeTopic[], onWake: OnWake): Promise<() => void>;
  /** Stop every subscription and timer (server shutdown, tests). */
  close(): void;
}
