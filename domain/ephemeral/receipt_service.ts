/**
 * Receipts and read markers: public (`m.read`) and private (`m.read.private`) read receipts,
 * unthreaded or per thread, and the read marker (`m.fully_read`, kept as room account data).
 * Local users' public receipts go to the room's other servers through the `federation` hook;
 * other servers' users' receipts come in through `receiveRemote` (their EDU handler,
 * domain/federation/edus/receipt_edu.ts) and show wherever local ones do.
 */
import { invalidParam, notFound } from "../errors.ts";
import type { AccountDataService } from "../account_data/account_data_service.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { Receipt, ReceiptReader, ReceiptStore, ReceiptType } from "../ports/receipt_store.ts";
import { requireJoined } from "./membership_checks.ts";
import { threadOfEvent } from "../protocol/relations.ts";

/** Tells other servers about local users' public read receipts (federation: receipt_edu.ts). */
export interface ReceiptFederation {
  /** After a local user's `m.read` receipt was stored. Never rejects. */
  receiptSent(receipt: Receipt): Promise<void>;
}

/** What the service is built from. */
export interface ReceiptServiceDeps {
  store: ReceiptStore;
  events: Pick<EventReader, "currentStateEventId" | "getEvent">;
  accountData: Pick<AccountDataService, "setFullyRead">;
  /** Wakes syncs watching the room (public receipts) or the user (private ones). */
  notifyRoom?: (roomId: string) => void;
  notifyUser?: (userId: string) => void;
  /** A user's read receipt (public or private) moved: their unread counts changed. */
  readReceiptMoved?: (userId: string, roomId: string) => void;
  /** Where local users' public receipts go to other servers; absent without federation. */
  federation?: ReceiptFederation;
  now?: () => number;
}

/** Every type `POST /receipt/{type}` accepts. */
export type AnyReceiptType = ReceiptType | "m.fully_read";

/** Sends receipts and read markers, and answers "where has this user read up to". */
export class ReceiptService implements ReceiptReader {
  /** Build over a store, the event reader and account data (for the read marker). */
  constructor(private readonly deps: ReceiptServiceDeps) {}

  latestReceipt(userId: string, roomId: string, threadId?: string): Promise<Receipt | null> {
    return this.deps.store.latestReceipt(userId, roomId, threadId);
  }

  /** `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}` for a joined user. */
  async sendReceipt(
    userId: string,
    roomId: string,
    receiptType: AnyReceiptType,
    eventId: string,
    threadId?: string,
  ): Promise<void> {
    if (threadId !== undefined) {
      if (receiptType === "m.fully_read") {
        throw invalidParam("thread_id is not allowed for m.fully_read");
      }
      if (threadId !== "main" && !threadId.startsWith("$")) {
        throw invalidParam("thread_id must be 'main' or a thread root's event ID");
      }
    }
    await requireJoined(this.deps.events, roomId, userId);
    const position = await this.#positionInRoom(roomId, eventId, threadId);
    if (receiptType === "m.fully_read") {
      await this.deps.accountData.setFullyRead(userId, roomId, eventId);
      return;
    }
    const receipt: Receipt = { roomId, userId, receiptType, eventId, position, ts: this.#now() };
    if (threadId !== undefined) receipt.threadId = threadId;
    const written = await this.deps.store.put(receipt);
    if (written === null) return;
    if (receiptType === "m.read") this.deps.notifyRoom?.(roomId);
    else this.deps.notifyUser?.(userId);
    this.deps.readReceiptMoved?.(userId, roomId);
    // Private receipts stay on this server (spec: never sent to other servers).
    if (receiptType === "m.read") await this.deps.federation?.receiptSent(receipt);
  }

  /**
   * Store another server's user's public receipt (its EDU handler checked that the server
   * speaks for the user and the user is joined) and wake the room's syncs; whether it was new.
   * Local users' unread counts are theirs alone, so nothing else moves.
   */
  async receiveRemote(receipt: Receipt): Promise<boolean> {
    const written = await this.deps.store.put(receipt);
    if (written === null) return false;
    this.deps.notifyRoom?.(receipt.roomId);
    return true;
  }

  /** `POST /rooms/{roomId}/read_markers`: any of the marker and the two receipts. */
  async setReadMarkers(
    userId: string,
    roomId: string,
    markers: { fullyRead?: string; read?: string; readPrivate?: string },
  ): Promise<void> {
    await requireJoined(this.deps.events, roomId, userId);
    if (markers.read !== undefined) {
      await this.sendReceipt(userId, roomId, "m.read", markers.read);
    }
    if (markers.readPrivate !== undefined) {
      await this.sendReceipt(userId, roomId, "m.read.private", markers.readPrivate);
    }
    if (markers.fullyRead !== undefined) {
      await this.sendReceipt(userId, roomId, "m.fully_read", markers.fullyRead);
    }
  }

  /**
   * The event's position; with a `thread_id`, the event must be in that thread (its root
   * counts, as do edits and reactions of its replies and of the root, as Synapse accepts them)
   * or, for `main`, in no thread (spec: 400 when "the event_id is not related to the
   * thread_id").
   */
  async #positionInRoom(roomId: string, eventId: string, threadId?: string): Promise<number> {
    const event = await this.deps.events.getEvent(eventId);
    if (!event || event.roomId !== roomId) throw notFound(`Unknown event ${eventId}`);
    if (threadId !== undefined) {
      const { thread, ancestors } = await threadOfEvent(event.pdu.content, async (id) => {
        const parent = await this.deps.events.getEvent(id);
        return parent?.roomId === roomId ? parent.pdu.content : undefined;
      });
      const related = thread === "main" && (eventId === threadId || ancestors.includes(threadId));
      if (thread !== threadId && !related) {
        throw invalidParam(`Event ${eventId} is not in thread ${threadId}`);
      }
    }
    return event.position;
  }

  #now(): number {
    return this.deps.now?.() ?? Date.now();
  }
}
