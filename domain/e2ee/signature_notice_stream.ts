/**
 * The signature-notice sync stream: when a user signs someone's master key with their
 * user-signing key, the target's device list does not change for anyone else, but the signer's
 * own devices must refetch the target's keys to see the new signature. Their incremental syncs
 * list the target in `device_lists.changed`.
 */
import type { CrossSigningStore } from "../ports/cross_signing_store.ts";
import type { SyncResponse } from "../sync/sync_response.ts";
import type { SyncStreamProvider, SyncStreamRequest } from "../sync/sync_stream.ts";

/** Adds the targets of the user's signature notices in (since, upTo] to `device_lists.changed`. */
export class SignatureNoticeStream implements SyncStreamProvider {
  readonly name = "signature_notices";

  /** Read notices from `store`. */
  constructor(private readonly store: Pick<CrossSigningStore, "signatureNoticeTargets">) {}

  async fill(request: SyncStreamRequest, response: SyncResponse): Promise<void> {
    // device_lists is for incremental syncs only: a full sync's client fetches all keys anyway.
    if (request.since === undefined) return;
    const targets = await this.store.signatureNoticeTargets(
      request.userId,
      request.since,
      request.upTo,
    );
    // The device-list stream pushes to the same array; list each user once.
    const changed = response.device_lists.changed;
    for (const userId of targets) if (!changed.includes(userId)) changed.push(userId);
  }
}
