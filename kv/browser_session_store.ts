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
import { takeOnce } from "./commit_retry.ts";

/** The KV implementation of the BrowserSessionStore port. */
export class KvBrowserSessionStore implements BrowserSessionStore {
  /** Over an open KV database; `now` is the clock expiries are measured against. */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** See BrowserSessionStore.put: the record and its entry in the user's list, in one commit. */
  async put(cookieHash: string, record: BrowserSessionRecord): Promise<void> {
    const expireIn = Math.max(1, record.expiresAt - this.now());
    await this.kv.atomic()
      .set(oauthKeys.browserSession(cookieHash), record, { expireIn })
      .set(oauthKeys.userBrowserSession(record.userId, record.sessionId), cookieHash, {
        expireIn,
      })
      .commit();
  }

  /** See BrowserSessionStore.get. */
  async get(cookieHash: string): Promise<BrowserSessionRecord | null> {
    return (await this.kv.get<BrowserSessionRecord>(oauthKeys.browserSession(cookieHash))).value;
  }

  /** See BrowserSessionStore.delete. */
  async delete(cookieHash: string): Promise<void> {
    const key = oauthKeys.browserSession(cookieHash);
    const record = (await this.kv.get<BrowserSessionRecord>(key)).value;
    const op = this.kv.atomic().delete(key);
    if (record) op.delete(oauthKeys.userBrowserSession(record.userId, record.sessionId));
    await op.commit();
  }

  /** See BrowserSessionStore.deleteAllOf: a few sessions per user, deleted in small commits. */
  async deleteAllOf(userId: string): Promise<number> {
    let deleted = 0;
    let batch = this.kv.atomic();
    let size = 0;
    for await (
      const entry of this.kv.list<string>({ prefix: oauthKeys.userBrowserSessionPrefix(userId) })
    ) {
      batch.delete(entry.key).delete(oauthKeys.browserSession(entry.value));
      deleted++;
      // Two mutations per session; well under KV's 1,000 per commit.
      if (++size === 200) {
        await batch.commit();
        batch = this.kv.atomic();
        size = 0;
      }
    }
    if (size > 0) await batch.commit();
    return deleted;
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
  take(requestId: string): Promise<PendingAuthorizationRecord | null> {
    return takeOnce(this.kv, oauthKeys.pendingAuthorization(requestId));
  }
}
