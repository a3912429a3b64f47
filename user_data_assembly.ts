/**
 * Wiring of the user-data services (profiles, account data, receipts, typing, presence) over
 * KV, with their sync streams and long-poll wake-ups; `assembleServer` in main.ts calls it.
 */
import { AccountDataService } from "./domain/account_data/account_data_service.ts";
import { AccountDataStream } from "./domain/account_data/account_data_stream.ts";
import {
  PresenceStream,
  ReceiptStream,
  TypingStream,
} from "./domain/ephemeral/ephemeral_streams.ts";
import { PresenceService } from "./domain/ephemeral/presence_service.ts";
import { ReceiptService } from "./domain/ephemeral/receipt_service.ts";
import { TypingService } from "./domain/ephemeral/typing_service.ts";
import type { LocalEventSender } from "./domain/local_event_sender.ts";
import type { EventStore } from "./domain/ports/event_store.ts";
import { ProfileService } from "./domain/profile/profile_service.ts";
import type { SyncNotifier } from "./domain/sync/sync_notifier.ts";
import type { SyncStreamProvider } from "./domain/sync/sync_stream.ts";
import { KvAccountDataStore } from "./kv/account_data_store.ts";
import { KvPresenceStore } from "./kv/presence_store.ts";
import { KvProfileStore } from "./kv/profile_store.ts";
import { KvReceiptStore } from "./kv/receipt_store.ts";
import { KvTypingStore } from "./kv/typing_store.ts";

/** The user-data services AppDeps carries. */
export interface UserDataServices {
  profiles: ProfileService;
  accountData: AccountDataService;
  receipts: ReceiptService;
  typing: TypingService;
  presence: PresenceService;
}

/** Build the user-data services and push their sync streams onto `syncStreams`. */
export function assembleUserData(options: {
  kv: Deno.Kv;
  serverName: string;
  eventStore: EventStore;
  sender: LocalEventSender;
  syncNotifier: SyncNotifier;
  syncStreams: SyncStreamProvider[];
  now?: () => number;
}): UserDataServices {
  const { kv, eventStore, syncNotifier, now } = options;
  const notifyUser = (userId: string) => syncNotifier.notifyUser(userId);
  const notifyRoom = (roomId: string) => syncNotifier.notifyRoom(roomId);
  // Presence reaches everyone sharing a room with the user: wake those rooms' syncs.
  const notifyPresence = (userId: string) => {
    syncNotifier.notifyUser(userId);
    eventStore.roomsOfUser(userId, ["join"]).then(
      (rooms) => rooms.forEach((r) => syncNotifier.notifyRoom(r.roomId)),
      (error) => console.warn("presence: wake-up failed", userId, error),
    );
  };

  const accountDataStore = new KvAccountDataStore(kv);
  const receiptStore = new KvReceiptStore(kv);
  const typingStore = new KvTypingStore(kv);
  const presenceStore = new KvPresenceStore(kv);
  const accountData = new AccountDataService({ store: accountDataStore, notifyUser });
  const services: UserDataServices = {
    profiles: new ProfileService({
      store: new KvProfileStore(kv),
      events: eventStore,
      sender: options.sender,
      serverName: options.serverName,
    }),
    accountData,
    receipts: new ReceiptService({
      store: receiptStore,
      events: eventStore,
      accountData,
      notifyRoom,
      notifyUser,
      now,
    }),
    typing: new TypingService({ store: typingStore, events: eventStore, notifyRoom, now }),
    presence: new PresenceService({ store: presenceStore, notifyPresence, now }),
  };
  options.syncStreams.push(
    new AccountDataStream(accountDataStore),
    new TypingStream(typingStore),
    new ReceiptStream(receiptStore),
    new PresenceStream(presenceStore, eventStore),
  );
  return services;
}
