/**
 * Storage port for send-to-device messaging: per-device inboxes ordered by commit, the
 * `/sendToDevice` transaction records that make a retry deliver nothing twice (and queue its
 * messages for other servers exactly once), the records of other servers' `m.direct_to_device`
 * EDUs that make a retried federation transaction deliver nothing twice, and the per-device
 * delivery record that turns the client's next sync token into an acknowledgement.
 */
import type { CommitMutation } from "./event_store.ts";
import type { JsonObject } from "../protocol/json.ts";

/** A to-device message as the recipient device sees it in `/sync`'s `to_device.events`. */
export interface ToDeviceEvent {
  type: string;
  sender: string;
  content: JsonObject;
}

/** One message for one local device. */
export interface ToDeviceDelivery {
  userId: string;
  deviceId: string;
  /** UTF-8 JSON of the ToDeviceEvent, as stored (validated for size by the caller). */
  event: Uint8Array;
}

/**
 * What a delivery is deduplicated by: a local `/sendToDevice` request, per (user, device,
 * txnId), or another server's `m.direct_to_device` EDU, per (origin, message_id). The record of
 * a remote one expires (RemoteToDeviceMessage) so they do not pile up forever.
 */
export type ToDeviceTransaction = LocalToDeviceTransaction | RemoteToDeviceMessage;

/** The sender side of a `/sendToDevice` request: idempotency is per (user, device, txnId). */
export interface LocalToDeviceTransaction {
  sender: string;
  senderDeviceId: string;
  txnId: string;
}

/** Another server's `m.direct_to_device` EDU: idempotency is per (origin, message_id). */
export interface RemoteToDeviceMessage {
  origin: string;
  messageId: string;
}

/**
 * The outbox writes of one EDU for another server (federationSender.eduMutations of it): they
 * land whole in one commit of the transaction that carries them.
 */
export type ToDeviceRemoteWrites = readonly CommitMutation[];

/**
 * How far a transaction got: `done`, or partly written when KV's per-commit limits made it take
 * several commits (the first `remote` EDUs for other servers are queued, and every local
 * recipient up to and including `after`, when set, has its message).
 */
export type ToDeviceTransactionProgress =
  | { done: true }
  | { done: false; remote: number; after?: { userId: string; deviceId: string } };

/** What one sync asks of a device's inbox. */
export interface ToDeviceSyncRequest {
  userId: string;
  deviceId: string;
  /** The client's `since`; absent on a full sync. */
  since?: string;
  /** The response's `next_batch` (the barrier): messages committed after it wait. */
  upTo: string;
  /** Most messages handed out by one response. */
  limit: number;
}

/**
 * The order deliveries are written in, and what a transaction's progress refers to: by user
 * ID, then device ID (UTF-16 code units, the same on every run).
 */
export function compareRecipients(
  a: { userId: string; deviceId: string },
  b: { userId: string; deviceId: string },
): number {
  if (a.userId !== b.userId) return a.userId < b.userId ? -1 : 1;
  if (a.deviceId !== b.deviceId) return a.deviceId < b.deviceId ? -1 : 1;
  return 0;
}

/** One page of a device's inbox, read without acknowledging anything. */
export interface ToDeviceInboxPage {
  /** Oldest first. */
  events: ToDeviceEvent[];
  /** Inbox position of the last event returned (pass it as `after` for the next page), or null. */
  last: string | null;
  /** Whether the inbox holds messages after this page. */
  more: boolean;
}

/** Storage of to-device inboxes, deliveries and transaction IDs. */
export interface ToDeviceStore {
  /** The transaction's progress; null when it was never seen. */
  transactionProgress(txn: ToDeviceTransaction): Promise<ToDeviceTransactionProgress | null>;
  /**
   * Put each delivery (sorted by `compareRecipients`, one per device) at the end of its
   * device's inbox under `txn`. Each commit carries the transaction's progress and checks it,
   * so recipients a previous or concurrent attempt already covered are skipped and nothing is
   * delivered twice; one commit when KV's limits allow. `remote` (the EDUs of a local request
   * for other servers, in order) is written first, each EDU's writes in one commit, exactly
   * once per transaction however often it is retried, and before the record says done.
   * `committed` runs after each commit that wrote to an inbox, with its versionstamp and the
   * users it wrote to.
   */
  deliver(
    txn: ToDeviceTransaction,
    deliveries: readonly ToDeviceDelivery[],
    committed: (versionstamp: string, userIds: string[]) => void,
    remote?: readonly ToDeviceRemoteWrites[],
  ): Promise<void>;
  /**
   * One sync's share of a device's inbox, oldest first: at most `limit` messages committed no
   * later than `upTo`. When `since` is the token the device's previous handing-out went out
   * with, those messages are acknowledged and deleted first (one commit with the new record);
   * any other `since` (a retried request) deletes nothing, so they are handed out again.
   */
  takeForSync(request: ToDeviceSyncRequest): Promise<ToDeviceEvent[]>;
  /**
   * Read at most `limit` messages of a device's inbox after position `after` (from its start when
   * null), deleting nothing: a dehydrated device's inbox (MSC3814) is paged through by the
   * device that rehydrates it, and must survive a rehydration that is cut short. Positions are
   * 20-digit lowercase hex (commit versionstamps) and grow with every message.
   */
  readInbox(
    userId: string,
    deviceId: string,
    after: string | null,
    limit: number,
  ): Promise<ToDeviceInboxPage>;
  /**
   * Forget a removed device: its inbox, its delivery record and the transaction IDs it sent
   * under. Idempotent; chunked when the inbox is larger than one commit.
   */
  removeDevice(userId: string, deviceId: string): Promise<void>;
}
