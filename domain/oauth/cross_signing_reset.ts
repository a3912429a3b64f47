/**
 * Cross-signing reset for OAuth sessions (spec v1.17 "OAuth authentication", MSC4312): a client
 * signed in through the OAuth 2.0 API has no password to prove, so replacing the user's
 * cross-signing keys is authorised by the user approving it in the account page
 * (`?action=org.matrix.cross_signing_reset`). The approval is kept in KV for 10 minutes and
 * the `m.oauth` user-interactive auth stage takes it, once.
 */
import type { Config } from "../config.ts";
import { MatrixError } from "../errors.ts";
import { OAUTH_PAGES, oauthUrl } from "./oauth_paths.ts";
import type { UiaStageHandler } from "../accounts/user_interactive_auth.ts";
import type {
  CrossSigningResetApproval,
  CrossSigningResetApprovalStore,
} from "../ports/cross_signing_reset_approval_store.ts";

/** How long an approval authorises a reset: long enough to go back to the client and retry. */
export const CROSS_SIGNING_RESET_APPROVAL_MS = 10 * 60_000;

/** The UIA stage type (spec v1.17). */
export const OAUTH_UIA_STAGE = "m.oauth";

/** The account page action that approves a reset (MSC4191). */
export const CROSS_SIGNING_RESET_ACTION = "org.matrix.cross_signing_reset";

/** Where the user approves a reset: the `m.oauth` stage's `params.url` (absolute, http(s)). */
export function crossSigningResetUrl(config: Config): string {
  return `${oauthUrl(config, OAUTH_PAGES.account)}?action=${CROSS_SIGNING_RESET_ACTION}`;
}

/** Approvals of cross-signing resets, one per user, single use. */
export class CrossSigningResetApprovals {
  /** Over a store; `now` is injectable for expiry tests. */
  constructor(
    private readonly store: CrossSigningResetApprovalStore,
    private readonly now: () => number = Date.now,
  ) {}

  /** Record that `userId` approved a reset now (replacing an earlier approval). */
  async approve(userId: string): Promise<CrossSigningResetApproval> {
    const approvedAt = this.now();
    const approval = {
      userId,
      approvedAt,
      expiresAt: approvedAt + CROSS_SIGNING_RESET_APPROVAL_MS,
    };
    await this.store.put(approval);
    return approval;
  }

  /** The user's unexpired approval, without using it (the account page shows it). */
  async pending(userId: string): Promise<CrossSigningResetApproval | null> {
    const approval = await this.store.get(userId);
    return approval !== null && approval.expiresAt > this.now() ? approval : null;
  }

  /** Withdraw the user's approval (the account page's cancel button). */
  async withdraw(userId: string): Promise<void> {
    await this.store.delete(userId);
  }

  /**
   * Use the user's approval: true when an unexpired one existed, which is then gone (an
   * expired one is dropped too and authorises nothing).
   */
  async consume(userId: string): Promise<boolean> {
    const approval = await this.store.take(userId);
    return approval !== null && approval.expiresAt > this.now();
  }
}

/**
 * The `m.oauth` stage for `userId`: passes when the user approved a reset in the account page
 * (at `url`) within the last 10 minutes, using that approval up. Before that it fails, so the
 * client gets the challenge again (with the URL) and may retry once the user has approved.
 */
export function oauthApprovalStage(
  approvals: CrossSigningResetApprovals,
  userId: string,
  url: string,
): UiaStageHandler {
  return async () => {
    if (!(await approvals.consume(userId))) {
      throw new MatrixError(
        "M_FORBIDDEN",
        403,
        `Approve the cross-signing reset at ${url} first (an approval lasts 10 minutes)`,
      );
    }
  };
}
