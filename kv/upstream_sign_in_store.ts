/**
 * Upstream sign-in in KV: flows (`upstreamstate_flow`, written with `expireIn` and checked on
 * read, taken with a read and a delete in one commit so a state works once across every
 * process), links (`upstreamsubject_userid`, created only if absent) and provisioning claims
 * (`upstreamsubject_provisioningclaim`, one live holder per subject).
 */
import type {
  UpstreamFlowRecord,
  UpstreamLinkRecord,
  UpstreamSignInStore,
} from "../domain/ports/upstream_sign_in_store.ts";
import { oauthKeys } from "./schema.ts";
import { commitOrConflict, contentionBackoff, contentionError, takeOnce } from "./commit_retry.ts";

/** A claim to provision a subject's first account; past `expiresAt` it is as good as absent. */
interface UpstreamProvisioningClaim {
  holder: string;
  expiresAt: number;
}

/** Lost races before a write gives up with 503 (two processes' SQLite writes collide). */
const MAX_ATTEMPTS = 8;

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
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const result = await commitOrConflict(
        this.kv.atomic().check({ key, versionstamp: null }).set(key, record),
      );
      if (result.ok) return true;
      // A failed check means a link exists; a busy database wrote nothing, so look again.
      if ((await this.kv.get(key)).versionstamp !== null) return false;
      await contentionBackoff(attempt);
    }
    throw contentionError("linking the sign-in");
  }

  /** See UpstreamSignInStore.claimProvisioning. */
  async claimProvisioning(
    issuer: string,
    subject: string,
    holder: string,
    expiresAt: number,
  ): Promise<boolean> {
    const key = oauthKeys.upstreamProvisioning(issuer, subject);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const current = await this.kv.get<UpstreamProvisioningClaim>(key);
      const claim = current.value;
      if (claim !== null && claim.holder !== holder && claim.expiresAt > this.now()) return false;
      const claimed: UpstreamProvisioningClaim = { holder, expiresAt };
      const expireIn = Math.max(1, expiresAt - this.now());
      const result = await commitOrConflict(
        this.kv.atomic().check(current).set(key, claimed, { expireIn }),
      );
      if (result.ok) return true;
      await contentionBackoff(attempt);
    }
    throw contentionError("starting the sign-in");
  }

  /** See UpstreamSignInStore.releaseProvisioning. */
  async releaseProvisioning(issuer: string, subject: string, holder: string): Promise<void> {
    const key = oauthKeys.upstreamProvisioning(issuer, subject);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const current = await this.kv.get<UpstreamProvisioningClaim>(key);
      if (current.value?.holder !== holder) return;
      if ((await commitOrConflict(this.kv.atomic().check(current).delete(key))).ok) return;
      await contentionBackoff(attempt);
    }
    // Left in place, the claim expires on its own.
  }
}
