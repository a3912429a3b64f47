/**
 * Pushers: `GET /pushers`, `POST /pushers/set` (add, replace, `append`, delete by `kind: null`),
 * removal with their device, and removal of pushers the push gateway rejects.
 */
import { MatrixError } from "../errors.ts";
import type { PusherStore } from "../ports/pusher_store.ts";
import { applyPusherSet, checkPusher, type Pusher, type PusherSetRequest } from "./pushers.ts";

const EDIT_ATTEMPTS = 8;

/** What the service is built from. */
export interface PusherServiceDeps {
  store: PusherStore;
  now?: () => number;
  /** A new pusher ID (random, short: it names the pusher's outbox stream). */
  newId?: () => string;
}

/** Reads and edits of users' pushers. */
export class PusherService {
  /** A service over the pusher store. */
  constructor(private readonly deps: PusherServiceDeps) {}

  /** The user's pushers. */
  async list(userId: string): Promise<Pusher[]> {
    return (await this.deps.store.get(userId)).pushers;
  }

  /** Several users' pushers (recipients of a notification). */
  forUsers(userIds: readonly string[]): Promise<Map<string, Pusher[]>> {
    return this.deps.store.getMany(userIds);
  }

  /**
   * `POST /pushers/set` from `deviceId`'s session. Without `append`, pushers of other users
   * for the same app and push key are removed first (the device moved to another account).
   */
  async set(userId: string, deviceId: string, request: PusherSetRequest): Promise<void> {
    checkPusher(request);
    const now = this.deps.now?.() ?? Date.now();
    const newId = this.deps.newId ?? randomId;
    await this.#edit(
      userId,
      (pushers) => applyPusherSet(pushers, request, { deviceId, now, newId }),
    );
    if (request.kind !== null && !request.append) {
      const holders = await this.deps.store.holders(request.app_id, request.pushkey);
      for (const other of holders.filter((u) => u !== userId)) {
        await this.remove(
          other,
          (p) => p.app_id === request.app_id && p.pushkey === request.pushkey,
        );
      }
    }
  }

  /** Remove the user's pushers that `match`; answers the removed ones. */
  async remove(userId: string, match: (p: Pusher) => boolean): Promise<Pusher[]> {
    let removed: Pusher[] = [];
    await this.#edit(userId, (pushers) => {
      removed = pushers.filter(match);
      return pushers.filter((p) => !match(p));
    });
    return removed;
  }

  /** A device was deleted or logged out: its pushers go with its access token. */
  async devicesRemoved(userId: string, deviceIds: readonly string[]): Promise<void> {
    const gone = new Set(deviceIds);
    await this.remove(userId, (p) => gone.has(p.deviceId));
  }

  async #edit(userId: string, change: (pushers: Pusher[]) => Pusher[]): Promise<void> {
    for (let attempt = 0; attempt < EDIT_ATTEMPTS; attempt++) {
      const stored = await this.deps.store.get(userId);
      const next = change(stored.pushers);
      if (next.length === stored.pushers.length && next.every((p, i) => p === stored.pushers[i])) {
        return;
      }
      if (await this.deps.store.put(userId, next, stored)) return;
    }
    throw new MatrixError("M_UNKNOWN", 409, "Pushers changed concurrently; try again");
  }
}

/** 16 random bytes, base64url: a pusher's ID. */
function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}
