/**
 * Cross-signing reset approvals in KV (`userid_crosssigningresetapproval`), written with KV's
 * `expireIn` so they vanish without a sweep (readers still check `expiresAt`, since KV deletes
 * expired keys only eventually).
 */
import type {
  CrossSigningResetApproval,
  CrossSigningResetApprovalStore,
} from "../domain/ports/cross_signing_reset_approval_store.ts";
import { oauthKeys } from "./schema.ts";
import { takeOnce } from "./commit_retry.ts";

/** The KV implementation of the CrossSigningResetApprovalStore port. */
export class KvCrossSigningResetApprovalStore implements CrossSigningResetApprovalStore {
  /** Over an open KV database; `now` is the clock `expireIn` is measured against. */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** See CrossSigningResetApprovalStore.put. */
  async put(approval: CrossSigningResetApproval): Promise<void> {
    const expireIn = Math.max(1, approval.expiresAt - this.now());
    await this.kv.set(oauthKeys.crossSigningResetApproval(approval.userId), approval, {
      expireIn,
    });
  }

  /** See CrossSigningResetApprovalStore.get. */
  async get(userId: string): Promise<CrossSigningResetApproval | null> {
    const key = oauthKeys.crossSigningResetApproval(userId);
    return (await this.kv.get<CrossSigningResetApproval>(key)).value;
  }

  /** See CrossSigningResetApprovalStore.take: of two racing uploads, one gets the approval. */
  take(userId: string): Promise<CrossSigningResetApproval | null> {
    return takeOnce(this.kv, oauthKeys.crossSigningResetApproval(userId));
  }

  /** See CrossSigningResetApprovalStore.delete. */
  async delete(userId: string): Promise<void> {
    await this.kv.delete(oauthKeys.crossSigningResetApproval(userId));
  }
}
