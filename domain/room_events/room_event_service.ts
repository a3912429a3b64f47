/** The room events use cases in one place, as routes and other areas reach them. */
import type { LocalEventSender } from "../local_event_sender.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { TransactionStore } from "../ports/transaction_store.ts";
import { EventPresenter } from "./event_presenter.ts";
import { EventVisibility } from "./event_visibility.ts";
import { RoomEventReads } from "./room_event_reads.ts";
import { RoomEventSending } from "./room_event_sending.ts";

/** Sending, reading, visibility and presentation of room events. */
export class RoomEventService {
  /** Sends under transaction IDs, and state. */
  readonly sending: RoomEventSending;
  /** /event, /context, /messages and /state reads. */
  readonly reads: RoomEventReads;
  /** History visibility over stored events (sync reuses it). */
  readonly visibility: EventVisibility;
  /** Client format with redactions and transaction IDs applied (sync reuses it). */
  readonly presenter: EventPresenter;

  /** Wire the pieces over the store, the sender and the transaction records. */
  constructor(deps: {
    store: EventReader;
    sender: LocalEventSender;
    transactions: TransactionStore;
    now?: () => number;
    /** This server's name, for deciding which stored redactions apply. */
    serverName: string;
  }) {
    this.sending = new RoomEventSending({ sender: deps.sender, transactions: deps.transactions });
    this.visibility = new EventVisibility(deps.store);
    this.presenter = new EventPresenter({
      store: deps.store,
      transactions: deps.transactions,
      now: deps.now ?? Date.now,
      serverName: deps.serverName,
    });
    this.reads = new RoomEventReads(deps.store, this.visibility, this.presenter);
  }
}
