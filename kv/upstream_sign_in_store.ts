/**
 * Upstream sign-in in KV: flows (`upstreamstate_flow`, written with `expireIn` and checked on
 * read, taken with a read and a delete in one commit so a state works once across every
 * process) and links (`upstreamsubject_userid`, created only if absent).
 */
import type {
  UpstreamFlowRecord,
  UpstreamLinkRecord,
  UpstreamSignInStore,
} from "../domain/ports/upstream_sign_in_store.ts";
import { oauthKeys } from "./schema.ts";
import { takeOnce } from "./commit_retry.ts";

/** The KV implementation of UpstreamSignInStore. */
export class KvUpstreamSignInStore implements UpstreamSignInStore {
  /** Over an open KV database; `now` is the clock expiries are measured against. */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** See UpstreamSignInStore.putFlow. */
  async putFlow(stateHash: string, record: UpstreamFlowRecord): Promise<void> {
    const expireIn = Math.max(1, record.expiresAt - this.now());
    await this.kv.set(oauthKeys.upstreamFlow(stateHash), record, { expireIn });
  }

  /** See UpstreamSignInStore.takeFlow: of two callbacks with one state, one gets the flow. */
  takeFlow(stateHash: string): Promise<UpstreamFlowRecord | null> {
    return takeOnce(this.kv, oauthKeys.upstreamFlow(stateHash));
  }

  /** See UpstreamSignInStore.getLink. */
  async getLink(issuer: string, subject: string): Promise<UpstreamLinkRecord | null> {
    return (await this.kv.get<UpstreamLinkRecord>(oauthKeys.upstreamLink(issuer, subject))).value;
  }

  /** See UpstreamSignInStore.createLink. */
  async createLink(record: UpstreamLinkRecord): Promise<boolean> {
    const key = oauthKeys.upstreamLink(record.issuer, record.subject);
    const result = await this.kv.atomic().check({ key, versionstamp: null }).set(key, record)
      .commit();
    return result.ok;
  }
}
