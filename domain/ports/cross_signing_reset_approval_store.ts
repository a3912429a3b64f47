/**
 * Storage port for cross-signing reset approvals: the account page records that the user
 * approved replacing their cross-signing keys, and the `m.oauth` UIA stage takes the record.
 */

/** One user's approval to replace their cross-signing keys. */
export interface CrossSigningResetApproval {
  userId: string;
  /** Milliseconds since the epoch. */
  approvedAt: number;
  /** After this the approval authorises nothing (the store may forget it any time after). */
  expiresAt: number;
}

/** Approvals, at most one per user (a new one replaces the old). */
export interface CrossSigningResetApprovalStore {
  /** Store (or replace) the user's approval until `approval.expiresAt`. */
  put(approval: CrossSigningResetApproval): Promise<void>;
  /** The user's approval as stored, or null; expired records may still be returned. */
  get(userId: string): Promise<CrossSigningResetApproval | null>;
  /**
   * Read and delete the user's approval in one atomic commit, so two requests cannot both use
   * it; null when there was none (or another request took it first).
   */
  take(userId: string): Promise<CrossSigningResetApproval | null>;
  /** Withdraw the user's approval, if any. */
  delete(userId: string): Promise<void>;
}
