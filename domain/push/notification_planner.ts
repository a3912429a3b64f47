/**
 * Notifications on the send path: for every accepted local event, evaluate the push rules of
 * each local member of the room (the sender excluded) and record the notifications in the
 * event's own commit, with the sender's implicit read receipt. Rulesets are cached by the push
 * rule service; the room's members, power levels and create event are cached per room and read
 * again whenever the room's current state has changed (messages leave it, and the cache, alone).
 */
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import { type RoomEvent, stateKey, toRoomEvent } from "../protocol/events.ts";
import type { LocalEventHook, PreparedEventWrites } from "../local_event_sender.ts";
import { notificationPowerLevel, powerLevelsOf, userPowerLevel } from "../protocol/power_levels.ts";
import type { RoomVersion } from "../protocol/room_versions.ts";
import type { EventStore } from "../ports/event_store.ts";
import {
  MAIN_THREAD,
  type NotificationEntry,
  type NotificationStore,
} from "../ports/notification_store.ts";
import type { Pdu } from "../protocol/events.ts";
import { evaluatePushRules, hasMentionsProperty, type PushEvent } from "./push_rule_evaluator.ts";
import type { PushRuleService } from "./push_rule_service.ts";
import type { Ruleset } from "./push_rules.ts";
import type { OutboxStore } from "../ports/outbox_store.ts";
import type { Pusher } from "./pushers.ts";
import { pushAppends } from "./push_delivery.ts";

/**
 * Most recipients whose records ride in the event's commit: two keys each (the count record and
 * the GET /notifications index), so 500 mutations at most, and the hook's weight tells the
 * sender to commit such an event on its own. Recipients beyond this, or beyond
 * IN_COMMIT_KEY_BYTES, are written right after the commit, before the sender is answered: a
 * crash in between loses their notifications, never the event.
 */
export const RECIPIENTS_PER_COMMIT = 250;
/**
 * Key bytes the in-commit records may take, of KV's 80 KiB per commit; the rest is left for the
 * event's own keys. Long user IDs reach this before RECIPIENTS_PER_COMMIT does.
 */
const IN_COMMIT_KEY_BYTES = 56 * 1024;
/** Fixed parts of one recipient's two keys (prefixes, timestamp, position, tuple framing). */
const KEY_BYTES_PER_RECIPIENT = 96;
/** Rooms whose member list and power levels are kept between events. */
const CACHED_ROOMS = 64;
/** Relation hops followed to find an event's thread, as the spec recommends. */
const THREAD_HOPS = 3;
/** Fixed parts of one push outbox entry's keys (entry and pending marker, pusher ID twice). */
const KEY_BYTES_PER_PUSH = 160;

/** Pushers and their outbox: notifications of users with pushers are queued for delivery. */
export interface PlannerPush {
  pushersOf(userIds: readonly string[]): Promise<Map<string, Pusher[]>>;
  outbox: Pick<OutboxStore, "mutations" | "append">;
  /** Entries were committed: wake this process's sender. */
  wake(): void;
}

/** What the planner reads. */
export interface NotificationPlannerDeps {
  store: EventStore;
  notifications: NotificationStore;
  pushRules: PushRuleService;
  serverName: string;
  /** Queue pushes for recipients with pushers (absent: notifications only). */
  push?: PlannerPush;
}

/** What an event's notifications depend on in its room, valid while the room head stands. */
interface RoomAudience {
  /** The room state the audience was read at (see RoomHeadView.currentStateId). */
  stateId: string;
  joined: string[];
  powerLevels?: RoomEvent;
  create?: RoomEvent;
  /**
   * Display names of members, read the first time an event needs them and kept with the rest:
   * they are current state, so they stay right as long as `stateId` does.
   */
  displayNames?: Map<string, string>;
}

/** The send-path hook that records who an event notifies. */
export class NotificationPlanner implements LocalEventHook {
  readonly #audiences = new Map<string, RoomAudience>();

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
    const push = this.deps.push;
    const pushers = push && entries.length > 0
      ? await push.pushersOf([...new Set(entries.map((e) => e.userId))])
      : new Map<string, Pusher[]>();
    const pushCount = (e: NotificationEntry) => pushers.get(e.userId)?.length ?? 0;
    const fitting = inCommitCount(entries, roomId, pushCount);
    const inCommit = entries.slice(0, fitting);
    const overflow = entries.slice(fitting);
    const placed = (list: NotificationEntry[], position: number) =>
      list.map((e) => ({ ...e, position }));
    const inCommitPushes = inCommit.reduce((n, e) => n + pushCount(e), 0);
    const anyPush = inCommitPushes > 0 || overflow.some((e) => pushCount(e) > 0);
    return {
      // Pushes: the entry and pending marker each, and the stream's wake key once.
      weight: 2 * inCommit.length + (own ? 1 : 0) + 2 * inCommitPushes +
        (inCommitPushes > 0 ? 1 : 0),
      writes: (appended) => {
        const mine = placed(inCommit, appended.position);
        const out = notifications.mutations(mine, own && { ...own, position: appended.position });
        if (push && inCommitPushes > 0) {
          out.push(...push.outbox.mutations(pushAppends(mine, pushers)));
        }
        return out;
      },
      afterCommit: overflow.length === 0 && !anyPush ? undefined : async (appended) => {
        const rest = placed(overflow, appended.position);
        if (rest.length > 0) await notifications.write(rest);
        if (push && anyPush) {
          const late = pushAppends(rest, pushers);
          if (late.length > 0) await push.outbox.append(late);
          push.wake();
        }
      },
    };
  }

  /** The notifications an event causes (positions and threads filled in by the caller). */
  async notificationsFor(
    event: { eventId: string; roomId: string; pdu: Pdu },
    version: RoomVersion,
  ): Promise<NotificationEntry[]> {
    const { pdu, roomId, eventId } = event;
    const audience = await this.#audience(roomId, version);
    const recipients = new Set(
      audience.joined.filter((u) => u !== pdu.sender && this.#isLocal(u)),
    );
    const invitee = pdu.type === "m.room.member" && pdu.content.membership === "invite"
      ? pdu.state_key
      : undefined;
    if (invitee !== undefined && invitee !== pdu.sender && this.#isLocal(invitee)) {
      recipients.add(invitee);
    }
    if (recipients.size === 0) return [];

    const rulesets = await this.deps.pushRules.rulesetsFor([...recipients]);
    const displayNames = await this.#displayNames(audience, roomId, version, rulesets, pdu.content);
    const levels = powerLevelsOf(audience.powerLevels, version);
    const senderLevel = userPowerLevel(
      pdu.sender,
      audience.powerLevels,
      audience.create,
      version,
    );
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
        memberCount: audience.joined.length,
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

  /**
   * The room's joined members and power events, cached until the room's current state changes.
   * The head is read first: a commit landing during the reads then caches newer data under an
   * older state ID, which the next check discards, never older data under a newer one.
   */
  async #audience(roomId: string, version: RoomVersion): Promise<RoomAudience> {
    const head = await this.deps.store.roomHead(roomId);
    const cached = this.#audiences.get(roomId);
    this.#audiences.delete(roomId);
    if (cached && head && cached.stateId === head.currentStateId) {
      this.#audiences.set(roomId, cached);
      return cached;
    }
    const [members, power] = await Promise.all([
      this.deps.store.members(roomId, ["join"]),
      this.#powerState(roomId, version),
    ]);
    const audience: RoomAudience = {
      stateId: head?.currentStateId ?? "",
      joined: members.map((m) => m.userId),
      ...power,
    };
    if (head) {
      this.#audiences.set(roomId, audience);
      if (this.#audiences.size > CACHED_ROOMS) {
        this.#audiences.delete(this.#audiences.keys().next().value!);
      }
    }
    return audience;
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

  /**
   * Display names, read only when a recipient has a rule using the deprecated
   * contains_display_name and it can match: a string body and no `m.mentions` (which turns the
   * legacy rule off). Read once per room state (kept on the audience), not once per message: two
   * KV round trips per message cost a busy room a third of its send rate.
   */
  async #displayNames(
    audience: RoomAudience,
    roomId: string,
    version: RoomVersion,
    rulesets: Map<string, Ruleset>,
    content: JsonObject,
  ): Promise<Map<string, string>> {
    if (typeof content.body !== "string" || hasMentionsProperty({ content })) return new Map();
    if (![...rulesets.values()].some(usesDisplayName)) return new Map();
    if (audience.displayNames) return audience.displayNames;
    const out = new Map<string, string>();
    const { store } = this.deps;
    const ids = await store.currentStateEventIds(
      roomId,
      audience.joined.map((u) => stateKey("m.room.member", u)),
    );
    const events = await store.getEvents([...ids.values()]);
    for (const stored of events.values()) {
      const member = toRoomEvent(stored.pdu, stored.eventId, version);
      const name = member.content.displayname;
      if (typeof name === "string" && member.state_key) out.set(member.state_key, name);
    }
    audience.displayNames = out;
    return out;
  }

  #isLocal(userId: string): boolean {
    return userId.endsWith(`:${this.deps.serverName}`);
  }
}

/**
 * How many of `entries` (in order) fit the event's commit: both keys of each name the user and
 * the room, so long IDs lower the count below RECIPIENTS_PER_COMMIT.
 */
function inCommitCount(
  entries: readonly NotificationEntry[],
  roomId: string,
  pushCount: (entry: NotificationEntry) => number = () => 0,
): number {
  const encoder = new TextEncoder();
  const roomBytes = encoder.encode(roomId).length;
  let bytes = 0;
  let mutations = 0;
  const max = Math.min(entries.length, RECIPIENTS_PER_COMMIT);
  for (let i = 0; i < max; i++) {
    bytes += KEY_BYTES_PER_RECIPIENT + 2 * (encoder.encode(entries[i].userId).length + roomBytes);
    bytes += pushCount(entries[i]) * (KEY_BYTES_PER_PUSH + roomBytes);
    // Pushes share the recipients' mutation budget: two writes each at most.
    mutations += 2 + 2 * pushCount(entries[i]);
    if (mutations > 2 * RECIPIENTS_PER_COMMIT) return i;
    if (bytes > IN_COMMIT_KEY_BYTES) return i;
  }
  return max;
}

function usesDisplayName(ruleset: Ruleset): boolean {
  return [...ruleset.override, ...ruleset.underride].some((r) =>
    r.enabled && r.conditions?.some((c) => c.kind === "contains_display_name")
  );
}
