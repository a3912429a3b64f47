/**
 * Browser sessions in KV (`browsersessionhash_session`) and pending authorization requests
 * (`oauthrequestid_pendingauthorization`): written with `expireIn` so they go without a sweep;
 * reads still check `expiresAt`, since KV deletes expired keys only eventually.
 */
import type {
  BrowserSessionRecord,
  BrowserSessionStore,
} from "../domain/ports/browser_session_store.ts";
import type {
  PendingAuthorizationRecord,
  PendingAuthorizationStore,
} from "../domain/ports/pending_authorization_store.ts";
import { oauthKeys } from "./schema.ts";

/** The KV implementation of the BrowserSessionStore port. */
export class KvBrowserSessionStore implements BrowserSessionStore {
  /** Over an open KV database; `now` is the clock expiries are measured against. */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** See BrowserSessionStore.put. */
  async put(cookieHash: string, record: BrowserSessionRecord): Promise<void> {
    const expireIn = Math.max(1, record.expiresAt - this.now());
    await this.kv.set(oauthKeys.browserSession(cookieHash), record, { expireIn });
  }

  /** See BrowserSessionStore.get. */
  async get(cookieHash: string): Promise<BrowserSessionRecord | null> {
    return (await this.kv.get<BrowserSessionRecord>(oauthKeys.browserSession(cookieHash))).value;
  }

  /** See BrowserSessionStore.delete. */
  async delete(cookieHash: string): Promise<void> {
    await this.kv.delete(oauthKeys.browserSession(cookieHash));
  }
}

/** The KV implementation of the PendingAuthorizationStore port. */
export class KvPendingAuthorizationStore implements PendingAuthorizationStore {
  /** Over an open KV database; `now` is the clock expiries are measured against. */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** See PendingAuthorizationStore.put. */
  async put(requestId: string, record: PendingAuthorizationRecord): Promise<void> {
    const expireIn = Math.max(1, record.expiresAt - this.now());
    await this.kv.set(oauthKeys.pendingAuthorization(requestId), record, { expireIn });
  }

  /** See PendingAuthorizationStore.get. */
  async get(requestId: string): Promise<PendingAuthorizationRecord | null> {
    const key = oauthKeys.pendingAuthorization(requestId);
    return (await this.kv.get<PendingAuthorizationRecord>(key)).value;
  }

  /** See PendingAuthorizationStore.take: the delete commits only if nobody took it first. */
  async take(requestId: string): Promise<PendingAuthorizationRecord | null> {
    const key = oauthKeys.pendingAuthorization(requestId);
    const entry = await this.kv.get<PendingAuthorizationRecord>(key);
    if (entry.value === null) return null;
    const result = await this.kv.atomic().check(entry).delete(key).commit();
    return result.ok ? entry.value : null;
  }
}
