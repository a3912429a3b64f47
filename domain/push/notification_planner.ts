/**
 * Notifications on the send path: for every accepted local event, evaluate the push rules of
 * each local member of the room (the sender excluded) and record the notifications in the
 * event's own commit, with the sender's implicit read receipt. Rulesets are cached by the push
 * rule service; the room's members, power levels and create event are read once per event.
 */
import { isJsonObject, type JsonObject } from "../json.ts";
import { type RoomEvent, stateKey, toRoomEvent } from "../events.ts";
import type { LocalEventHook, PreparedEventWrites } from "../local_event_sender.ts";
import { notificationPowerLevel, powerLevelsOf, userPowerLevel } from "../power_levels.ts";
import type { RoomVersion } from "../room_versions.ts";
import type { EventStore } from "../ports/event_store.ts";
import {
  MAIN_THREAD,
  type NotificationEntry,
  type NotificationStore,
} from "../ports/notification_store.ts";
import type { Pdu } from "../events.ts";
import { evaluatePushRules, type PushEvent } from "./push_rule_evaluator.ts";
import type { PushRuleService } from "./push_rule_service.ts";
import type { Ruleset } from "./push_rules.ts";

/**
 * Recipients whose count records ride in the event's commit (one key of about 110 bytes each;
 * the sender splits batches to keep hook writes within a commit). The rest, and every entry's
 * GET /notifications index, are written right after the commit, before the sender is answered.
 */
export const RECIPIENTS_PER_COMMIT = 250;
/** Relation hops followed to find an event's thread, as the spec recommends. */
const THREAD_HOPS = 3;

/** What the planner reads. */
export interface NotificationPlannerDeps {
  store: EventStore;
  notifications: NotificationStore;
  pushRules: PushRuleService;
  serverName: string;
}

/** The send-path hook that records who an event notifies. */
export class NotificationPlanner implements LocalEventHook {
  /** A planner over the event store, notification store and push rules. */
  constructor(private readonly deps: NotificationPlannerDeps) {}

  async prepare(
    event: { eventId: string; roomId: string; pdu: Pdu },
    version: RoomVersion,
  ): Promise<PreparedEventWrites | undefined> {
    const { pdu, roomId } = event;
    const { notifications } = this.deps;
    const [threadId, entries] = await Promise.all([
      this.threadOf(pdu.content),
      this.notificationsFor(event, version),
    ]);
    for (const entry of entries) entry.threadId = threadId;
    const own = this.#isLocal(pdu.sender)
      ? { userId: pdu.sender, roomId, threadId, position: 0 }
      : undefined;
    const inCommit = entries.slice(0, RECIPIENTS_PER_COMMIT);
    const overflow = entries.slice(RECIPIENTS_PER_COMMIT);
    const placed = (list: NotificationEntry[], position: number) =>
      list.map((e) => ({ ...e, position }));
    return {
      weight: inCommit.length + (own ? 1 : 0),
      writes: (appended) =>
        notifications.mutations(
          placed(inCommit, appended.position),
          own && { ...own, position: appended.position },
        ),
      afterCommit: entries.length === 0 ? undefined : async (appended) => {
        await notifications.write(placed(overflow, appended.position), true);
        await notifications.write(placed(inCommit, appended.position), false);
      },
    };
  }

  /** The notifications an event causes (positions and threads filled in by the caller). */
  async notificationsFor(
    event: { eventId: string; roomId: string; pdu: Pdu },
    version: RoomVersion,
  ): Promise<NotificationEntry[]> {
    const { pdu, roomId, eventId } = event;
    const { store } = this.deps;
    const members = await store.members(roomId, ["join"]);
    const recipients = new Set(
      members.map((m) => m.userId).filter((u) => u !== pdu.sender && this.#isLocal(u)),
    );
    const invitee = pdu.type === "m.room.member" && pdu.content.membership === "invite"
      ? pdu.state_key
      : undefined;
    if (invitee !== undefined && invitee !== pdu.sender && this.#isLocal(invitee)) {
      recipients.add(invitee);
    }
    if (recipients.size === 0) return [];

    const [rulesets, power] = await Promise.all([
      this.deps.pushRules.rulesetsFor([...recipients]),
      this.#powerState(roomId, version),
    ]);
    const displayNames = await this.#displayNames(roomId, version, rulesets);
    const levels = powerLevelsOf(power.powerLevels, version);
    const senderLevel = userPowerLevel(pdu.sender, power.powerLevels, power.create, version);
    const pushEvent: PushEvent = {
      type: pdu.type,
      sender: pdu.sender,
      room_id: roomId,
      event_id: eventId,
      content: pdu.content,
      ...(pdu.state_key !== undefined ? { state_key: pdu.state_key } : {}),
    };
    const entries: NotificationEntry[] = [];
    for (const userId of recipients) {
      const decision = evaluatePushRules(rulesets.get(userId)!, pushEvent, {
        userId,
        memberCount: members.length,
        displayName: displayNames.get(userId),
        senderPowerLevel: senderLevel,
        notificationPowerLevel: (key) => notificationPowerLevel(key, levels),
      });
      if (!decision?.notify) continue;
      entries.push({
        userId,
        roomId,
        position: 0,
        eventId,
        threadId: MAIN_THREAD,
        highlight: decision.highlight,
        actions: decision.actions,
        ts: pdu.origin_server_ts,
      });
    }
    return entries;
  }

  /** The thread an event belongs to: its m.thread root, following up to 3 relations. */
  async threadOf(content: JsonObject): Promise<string> {
    let relation = content["m.relates_to"];
    for (let hop = 0; hop < THREAD_HOPS; hop++) {
      if (!isJsonObject(relation) || typeof relation.event_id !== "string") return MAIN_THREAD;
      if (relation.rel_type === "m.thread") return relation.event_id;
      const parent = await this.deps.store.getEvent(relation.event_id);
      if (!parent) return MAIN_THREAD;
      relation = parent.pdu.content["m.relates_to"];
    }
    return MAIN_THREAD;
  }

  async #powerState(
    roomId: string,
    version: RoomVersion,
  ): Promise<{ powerLevels?: RoomEvent; create?: RoomEvent }> {
    const { store } = this.deps;
    const plKey = stateKey("m.room.power_levels", "");
    const createKey = stateKey("m.room.create", "");
    const ids = await store.currentStateEventIds(roomId, [plKey, createKey]);
    const events = await store.getEvents([...ids.values()]);
    const load = (key: typeof plKey) => {
      const id = ids.get(key);
      const stored = id === undefined ? undefined : events.get(id);
      return stored ? toRoomEvent(stored.pdu, stored.eventId, version) : undefined;
    };
    return { powerLevels: load(plKey), create: load(createKey) };
  }

  /** Display names, read only for users with a rule using the deprecated contains_display_name. */
  async #displayNames(
    roomId: string,
    version: RoomVersion,
    rulesets: Map<string, Ruleset>,
  ): Promise<Map<string, string>> {
    const wanted = [...rulesets].filter(([, r]) => usesDisplayName(r)).map(([u]) => u);
    const out = new Map<string, string>();
    if (wanted.length === 0) return out;
    const { store } = this.deps;
    const ids = await store.currentStateEventIds(
      roomId,
      wanted.map((u) => stateKey("m.room.member", u)),
    );
    const events = await store.getEvents([...ids.values()]);
    for (const stored of events.values()) {
      const member = toRoomEvent(stored.pdu, stored.eventId, version);
      const name = member.content.displayname;
      if (typeof name === "string" && member.state_key) out.set(member.state_key, name);
    }
    return out;
  }

  #isLocal(userId: string): boolean {
    return userId.endsWith(`:${this.deps.serverName}`);
  }
}

function usesDisplayName(ruleset: Ruleset): boolean {
  return [...ruleset.override, ...ruleset.underride].some((r) =>
    r.enabled && r.conditions?.some((c) => c.kind === "contains_display_name")
  );
}
