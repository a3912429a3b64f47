/** The room events use cases in one place, as routes and other areas reach them. */
import type { LocalEventSender } from "../local_event_sender.ts";
import type { EventReader } from "../ports/event_store.ts";
import type { RelationReader } from "../ports/relation_store.ts";
import type { TransactionStore } from "../ports/transaction_store.ts";
import type { HistoryBackfill } from "../federation/backfill.ts";
import type { ReadPipeline } from "./read_pipeline.ts";
import { RoomEventReads } from "./room_event_reads.ts";
import { RoomEventSending } from "./room_event_sending.ts";

/** Sending and reading room events. */
export class RoomEventService {
  /** Sends under transaction IDs, and state. */
  readonly sending: RoomEventSending;
  /** /event, /context, /messages, /state, /members and /joined_members reads. */
  readonly reads: RoomEventReads;

  /** Wire the pieces over the store, the sender, the transaction records and the pipeline. */
  constructor(deps: {
    store: EventReader;
    sender: LocalEventSender;
    transactions: TransactionStore;
    /** The only way events leave the server (required: no reader may skip it). */
    pipeline: ReadPipeline;
    /** Relation projections, for the checks of a sent event's relation. */
    relations: RelationReader;
    /** History from other servers for /messages (domain/federation/backfill.ts). */
    backfill?: HistoryBackfill;
  }) {
    this.sending = new RoomEventSending({
      sender: deps.sender,
      transactions: deps.transactions,
      store: deps.store,
      relations: deps.relations,
    });
    this.reads = new RoomEventReads(deps.store, deps.pipeline, deps.backfill);
  }
}
