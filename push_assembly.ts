/**
 * Wiring of push rules and notifications over KV: the rule service, the send-path planner the
 * LocalEventSender runs for every event, the notification store, and the `m.push_rules` sync
 * stream; `assembleServer` in main.ts calls it before building the sender.
 */
import { NotificationPlanner } from "./domain/push/notification_planner.ts";
import { NotificationCountService } from "./domain/push/notification_counts.ts";
import { PushRuleService } from "./domain/push/push_rule_service.ts";
import { pushRulesSyncStream } from "./domain/push/push_rules_sync.ts";
import type { EventStore } from "./domain/ports/event_store.ts";
import type { ReceiptReader } from "./domain/ports/receipt_store.ts";
import type { SyncNotifier } from "./domain/sync/sync_notifier.ts";
import type { SyncStreamProvider } from "./domain/sync/sync_stream.ts";
import { KvNotificationStore } from "./kv/notification_store.ts";
import { KvPushRuleStore } from "./kv/push_rule_store.ts";

/** The push services, before receipts exist (they are built after the sender). */
export interface PushServices {
  pushRules: PushRuleService;
  notifications: KvNotificationStore;
  planner: NotificationPlanner;
  /** Counts over these notifications and the receipts service. */
  countsWith(receipts: ReceiptReader): NotificationCountService;
}

/** Build the push services and push the `m.push_rules` stream onto `syncStreams`. */
export function assemblePush(options: {
  kv: Deno.Kv;
  serverName: string;
  eventStore: EventStore;
  syncNotifier: SyncNotifier;
  syncStreams: SyncStreamProvider[];
}): PushServices {
  const { kv, eventStore } = options;
  const ruleStore = new KvPushRuleStore(kv);
  const pushRules = new PushRuleService(ruleStore);
  pushRules.onChange((userId) => options.syncNotifier.notifyUser(userId));
  options.syncStreams.push(pushRulesSyncStream(ruleStore, pushRules));
  const notifications = new KvNotificationStore(kv);
  const planner = new NotificationPlanner({
    store: eventStore,
    notifications,
    pushRules,
    serverName: options.serverName,
  });
  return {
    pushRules,
    notifications,
    planner,
    countsWith: (receipts) => new NotificationCountService(notifications, receipts),
  };
}
