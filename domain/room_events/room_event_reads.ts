/**
 * Reading a room's events for clients: one event, an event's context, /messages pages and room
 * state, each filtered by history visibility and presented with redactions applied.
 */
import type { ClientEvent } from "../client_event.ts";
import { forbidden, notFound, unsupportedRoomVersion } from "../errors.ts";
import { matchesRoomEventFilter, type RoomEventFilter } from "../event_filter.ts";
import { splitStateKey, stateKey, type StateMap } from "../events.ts";
import type { Direction, EventReader, StoredEvent } from "../ports/event_store.ts";
import { type RoomVersion, roomVersion } from "../room_versions.ts";
import type { EventPresenter } from "./event_presenter.ts";
import type { EventVisibility, Viewer } from "./event_visibility.ts";

/** Who reads: the user and the device (for transaction IDs). */
export interface Reader {
  userId: string;
  deviceId?: string;
}

/** Pages walked at most per /messages request while filters drop everything. */
const MAX_PAGES = 10;

/** A /messages response. */
export interface MessagesPage {
  chunk: ClientEvent[];
  start: string;
  end?: string;
  state?: ClientEvent[];
}

/** A /context response. */
export interface EventContext {
  event: ClientEvent;
  events_before: ClientEvent[];
  events_after: ClientEvent[];
  start: string;
  end: string;
  state: ClientEvent[];
}

/** Reads of room events, visibility applied. */
export class RoomEventReads {
  /** Reads over the store, visibility rules and the presenter. */
  constructor(
    private readonly store: EventReader,
    private readonly visibility: EventVisibility,
    private readonly presenter: EventPresenter,
  ) {}

  /** GET /rooms/{roomId}/event/{eventId}: 404 when unknown, elsewhere, or not visible. */
  async event(reader: Reader, roomId: string, eventId: string): Promise<ClientEvent> {
    const { version, viewer } = await this.#open(reader, roomId);
    const stored = await this.store.getEvent(eventId);
    if (!stored || stored.roomId !== roomId || stored.status !== "accepted") {
      throw notFound("Event not found");
    }
    const [visible] = await this.visibility.filter(viewer, [stored]);
    if (!visible) throw notFound("Event not found");
    const [event] = await this.presenter.present(
      [stored],
      this.#presentOptions(reader, roomId, version, true),
    );
    return event;
  }

  /** GET /rooms/{roomId}/context/{eventId}. */
  async context(
    reader: Reader,
    roomId: string,
    eventId: string,
    limit: number,
    filter: RoomEventFilter,
  ): Promise<EventContext> {
    const { version, viewer } = await this.#open(reader, roomId);
    const stored = await this.store.getEvent(eventId);
    if (!stored || stored.roomId !== roomId || stored.status !== "accepted") {
      throw notFound("Event not found");
    }
    if ((await this.visibility.filter(viewer, [stored])).length === 0) {
      throw notFound("Event not found");
    }
    const beforeLimit = Math.floor(limit / 2);
    const afterLimit = limit - beforeLimit;
    const here = this.store.timelineTokenAt(stored.position);
    const next = this.store.timelineTokenAt(stored.position + 1);
    const before = beforeLimit > 0
      ? await this.#walk(viewer, roomId, { from: here, dir: "b", limit: beforeLimit }, filter)
      : { events: [], end: here };
    const after = afterLimit > 0
      ? await this.#walk(viewer, roomId, { from: next, dir: "f", limit: afterLimit }, filter)
      : { events: [], end: next };
    const options = this.#presentOptions(reader, roomId, version, true);
    const [event, eventsBefore, eventsAfter] = await Promise.all([
      this.presenter.present([stored], options).then((e) => e[0]),
      this.presenter.present(before.events, options),
      this.presenter.present(after.events, options),
    ]);
    const last = after.events.at(-1) ?? stored;
    const stateAfter = (await this.store.stateAtEvent(last.eventId, "after")) ?? new Map();
    const state = await this.#stateEvents(
      reader,
      roomId,
      version,
      filter.lazy_load_members
        ? this.#lazyMembers(stateAfter, [stored, ...before.events, ...after.events])
        : stateAfter,
    );
    return {
      event,
      events_before: eventsBefore,
      events_after: eventsAfter,
      start: before.end ??
        this.store.timelineTokenAt(before.events.at(-1)?.position ?? stored.position),
      end: after.end ??
        this.store.timelineTokenAt((after.events.at(-1)?.position ?? stored.position) + 1),
      state,
    };
  }

  /** GET /rooms/{roomId}/messages. */
  async messages(
    reader: Reader,
    roomId: string,
    options: { from?: string; to?: string; dir: Direction; limit: number; filter: RoomEventFilter },
  ): Promise<MessagesPage> {
    const { version, viewer } = await this.#open(reader, roomId);
    const walked = await this.#walk(viewer, roomId, options, options.filter);
    const presentOptions = this.#presentOptions(reader, roomId, version, true);
    const page: MessagesPage = {
      chunk: await this.presenter.present(walked.events, presentOptions),
      start: walked.start,
    };
    if (walked.end !== undefined) page.end = walked.end;
    if (options.filter.lazy_load_members) {
      const current = await this.store.currentState(roomId);
      page.state = await this.#stateEvents(
        reader,
        roomId,
        version,
        this.#lazyMembers(current, walked.events),
      );
    }
    return page;
  }

  /** GET /rooms/{roomId}/state: current state for members, state at leaving for former ones. */
  async state(reader: Reader, roomId: string): Promise<ClientEvent[]> {
    const { version, state } = await this.#visibleState(reader, roomId);
    return this.#stateEvents(reader, roomId, version, state);
  }

  /** GET /rooms/{roomId}/state/{type}/{stateKey}: the state event, or 404. */
  async stateEvent(
    reader: Reader,
    roomId: string,
    type: string,
    key: string,
  ): Promise<ClientEvent> {
    const { version, state } = await this.#visibleState(reader, roomId);
    const id = state.get(stateKey(type, key));
    const [event] = id
      ? await this.#stateEvents(reader, roomId, version, new Map([[stateKey(type, key), id]]))
      : [];
    if (!event) throw notFound(`No ${type} state with key '${key}' in this room`);
    return event;
  }

  /** The room's version and the viewer; M_FORBIDDEN for outsiders of non-world-readable rooms. */
  async #open(reader: Reader, roomId: string): Promise<{ version: RoomVersion; viewer: Viewer }> {
    const head = await this.store.roomHead(roomId);
    if (!head) throw forbidden("You are not in this room");
    const version = roomVersion(head.roomVersion);
    if (!version) throw unsupportedRoomVersion(head.roomVersion);
    const viewer = await this.visibility.viewer(reader.userId, roomId);
    if (viewer.membership === undefined && !(await this.visibility.worldReadable(roomId))) {
      throw forbidden("You are not in this room");
    }
    return { version, viewer };
  }

  /** The state a reader may see: current (joined or world-readable), or as they left it. */
  async #visibleState(reader: Reader, roomId: string) {
    const { version, viewer } = await this.#open(reader, roomId);
    if (viewer.membership === "join" || (await this.visibility.worldReadable(roomId))) {
      return { version, state: await this.store.currentState(roomId) };
    }
    if (
      (viewer.membership === "leave" || viewer.membership === "ban") &&
      viewer.membershipEventId !== undefined
    ) {
      const state = await this.store.stateAtEvent(viewer.membershipEventId, "after");
      if (state) return { version, state };
    }
    throw forbidden("You are not in this room");
  }

  /** Walk the timeline until `limit` visible, matching events are found or the log ends. */
  async #walk(
    viewer: Viewer,
    roomId: string,
    options: { from?: string; to?: string; dir: Direction; limit: number },
    filter: RoomEventFilter,
  ): Promise<{ events: StoredEvent[]; start: string; end?: string }> {
    const events: StoredEvent[] = [];
    let from = options.from;
    let start: string | undefined;
    let end: string | undefined;
    for (let page = 0; page < MAX_PAGES && events.length < options.limit; page++) {
      const wanted = options.limit - events.length;
      const walked = await this.store.timeline(roomId, {
        from,
        to: options.to,
        dir: options.dir,
        limit: wanted,
      });
      start ??= walked.start;
      const matching = walked.events.filter((e) =>
        matchesRoomEventFilter(filter, { ...e.pdu, room_id: roomId })
      );
      events.push(...await this.visibility.filter(viewer, matching));
      end = walked.end;
      if (end === undefined) break;
      from = end;
    }
    return { events, start: start!, end };
  }

  /** Member events of the senders of `events` (and of nobody else), from `state`. */
  #lazyMembers(state: StateMap, events: readonly StoredEvent[]): StateMap {
    const out: StateMap = new Map();
    for (const event of events) {
      const key = stateKey("m.room.member", event.pdu.sender);
      const id = state.get(key);
      if (id !== undefined) out.set(key, id);
    }
    return out;
  }

  async #stateEvents(
    reader: Reader,
    roomId: string,
    version: RoomVersion,
    state: StateMap,
  ): Promise<ClientEvent[]> {
    const found = await this.store.getEvents([...state.values()]);
    const ordered = [...state].sort(([a], [b]) => compareStateKeys(a, b))
      .flatMap(([, id]) => found.get(id) ?? []);
    return this.presenter.present(ordered, this.#presentOptions(reader, roomId, version, false));
  }

  #presentOptions(reader: Reader, roomId: string, version: RoomVersion, prevContent: boolean) {
    return { roomId, version, deviceId: reader.deviceId, prevContent };
  }
}

function compareStateKeys(a: string, b: string): number {
  const [ta, ka] = splitStateKey(a as `${string}\u0000${string}`);
  const [tb, kb] = splitStateKey(b as `${string}\u0000${string}`);
  return ta < tb ? -1 : ta > tb ? 1 : ka < kb ? -1 : ka > kb ? 1 : 0;
}
