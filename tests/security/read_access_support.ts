/**
 * Support for the read-access security suite (issue 8, findings 1, 2, 7, 20): one in-process
 * server with reusable users, a room per (history visibility, reader kind) built over the real
 * HTTP routes, and the rule that says which marker messages a reader must, may or must never see.
 *
 * The rule is the algorithm of the client-server spec's "Room History Visibility" module
 * (v1.19; the prose is not in /work/shared/spec, which holds only the API data): for an event E
 * and a user U,
 *   world_readable -> allow; U joined at E -> allow; U invited at E and visibility invited or
 *   shared -> allow; visibility shared and U joined at some point after E -> allow; else deny.
 * Where the spec allows but does not oblige a server to show something (a route may answer 403
 * instead, or Synapse 1.67 shows less), the marker is only checked for leaks, never for presence.
 */
import { assert } from "../assert.ts";
import { type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import { type JsonResponse, startTestServer } from "../routes/test_server.ts";

export const V3 = "/_matrix/client/v3";

/** The four history visibilities. */
export const VISIBILITIES = ["world_readable", "shared", "invited", "joined"] as const;
export type Visibility = typeof VISIBILITIES[number];

/** What the reader does before the "during" message, and after it (then maybe rejoins). */
type FirstStep = "invite" | "knock" | "join";
type SecondStep = "leave" | "kicked" | "banned" | "accept";

/** One kind of reader: how they come to the room and how (if at all) they go. */
export interface ReaderKind {
  /** Short name, used in markers and user IDs. */
  name: string;
  /** What the test name says. */
  title: string;
  joinRule: "public" | "knock" | "invite";
  first?: FirstStep;
  second?: SecondStep;
  /** Joins again after the `after` message, before the `name` marker. */
  rejoins?: true;
}

/** Every reader kind the issue names. */
export const READERS: readonly ReaderKind[] = [
  { name: "nonmember", title: "non-member", joinRule: "public" },
  { name: "invitee", title: "invitee (pending)", joinRule: "invite", first: "invite" },
  { name: "knocker", title: "knocker (pending)", joinRule: "knock", first: "knock" },
  {
    name: "leaver",
    title: "leaver (joined then left)",
    joinRule: "public",
    first: "join",
    second: "leave",
  },
  { name: "banned", title: "banned user", joinRule: "public", first: "join", second: "banned" },
  { name: "latejoiner", title: "late joiner", joinRule: "public", first: "join" },
  {
    name: "accepter",
    title: "invitee who then joined",
    joinRule: "invite",
    first: "invite",
    second: "accept",
  },
  {
    name: "rejecter",
    title: "invite rejected",
    joinRule: "invite",
    first: "invite",
    second: "leave",
  },
  {
    name: "withdrawn",
    title: "invite withdrawn (kicked while invited)",
    joinRule: "invite",
    first: "invite",
    second: "kicked",
  },
  {
    name: "unknocked",
    title: "knocked then withdrew",
    joinRule: "knock",
    first: "knock",
    second: "leave",
  },
  {
    name: "rejoiner",
    title: "rejoiner (joined, left, joined again)",
    joinRule: "public",
    first: "join",
    second: "leave",
    rejoins: true,
  },
];

/**
 * The room's story, one marker per phase: `before` the reader's first membership, `during` it,
 * `after` the second (or later in the same membership when there is none), and `name` — the
 * owner's display name set last (after a rejoin, if any), a state marker for the state routes.
 */
export const PHASES = ["before", "during", "after", "name"] as const;
export type Phase = typeof PHASES[number];

/** What a response must do with a marker. */
export type Verdict = "required" | "forbidden" | "allowed";

/** A marker string that no other marker contains. */
export function marker(vis: Visibility, kind: ReaderKind, phase: Phase): string {
  return `[[${vis}|${kind.name}|${phase === "name" ? "name-after" : `secret-${phase}`}]]`;
}

/** The reader's membership when a phase's event was sent (undefined: none). */
export function membershipAt(kind: ReaderKind, phase: Phase): string | undefined {
  if (phase === "before") return undefined;
  if (phase === "name" && kind.rejoins) return "join";
  if (phase === "during" || kind.second === undefined) return kind.first;
  return { banned: "ban", accept: "join", leave: "leave", kicked: "leave" }[kind.second];
}

/** Whether the reader joined at some point after the phase's event. */
function joinedAfter(kind: ReaderKind, phase: Phase): boolean {
  if (kind.rejoins) return phase !== "name";
  if (kind.second === "accept") return phase === "before" || phase === "during";
  return phase === "before" && kind.first === "join";
}

/** Joined now. */
export function currentlyJoined(kind: ReaderKind): boolean {
  if (kind.second === "accept") return true;
  return kind.first === "join" && (kind.second === undefined || kind.rejoins === true);
}

/** Joined once, then left or was banned. */
export function departedMember(kind: ReaderKind): boolean {
  return kind.first === "join" && departedFromRoom(kind);
}

/** Joined, then left of their own accord (a ban is not a leave: Synapse refuses banned users). */
function leftAfterJoining(kind: ReaderKind): boolean {
  return departedMember(kind) && kind.second === "leave";
}

/** Not in the room now, after having had a membership (left, rejected, kicked, banned). */
export function departedFromRoom(kind: ReaderKind): boolean {
  return kind.second !== undefined && kind.second !== "accept" && !kind.rejoins;
}

/** The spec's algorithm: may the reader see the phase's event at all? */
export function specAllows(vis: Visibility, kind: ReaderKind, phase: Phase): boolean {
  if (vis === "world_readable") return true;
  const m = membershipAt(kind, phase);
  if (m === "join") return true;
  if (m === "invite" && (vis === "invited" || vis === "shared")) return true;
  return vis === "shared" && joinedAfter(kind, phase);
}

/** Whether a route must answer (ok), must refuse with 403 M_FORBIDDEN, or may do either. */
export type Access = "ok" | "forbidden" | "either";

/** Access to /messages, /context and /event. */
export function timelineAccess(vis: Visibility, kind: ReaderKind): Access {
  if (vis === "world_readable" || currentlyJoined(kind) || leftAfterJoining(kind)) return "ok";
  if (kind.first === undefined) return "forbidden";
  // Synapse refuses banned users and pending invitees and knockers (not joined); Tessera answers
  // with what they may see. The spec's 403 ("You aren't a member of the room") reads either way.
  return "either";
}

/** Access to /members, /state and /state/{type}/{key}: members and former members. */
export function stateAccess(vis: Visibility, kind: ReaderKind): Access {
  if (vis === "world_readable" || currentlyJoined(kind) || leftAfterJoining(kind)) return "ok";
  if (kind.first === undefined) return "forbidden";
  return "either";
}

/** Access to /joined_members: "The current user must be in the room for it to work". */
export function joinedMembersAccess(vis: Visibility, kind: ReaderKind): Access {
  if (currentlyJoined(kind)) return "ok";
  // Synapse lets anyone read a world-readable room's joined members.
  return vis === "world_readable" ? "either" : "forbidden";
}

/** Verdict for a marker on /messages, /context and /event (events the reader pages through). */
export function timelineVerdict(vis: Visibility, kind: ReaderKind, phase: Phase): Verdict {
  if (!specAllows(vis, kind, phase)) return "forbidden";
  const later = phase === "after" || phase === "name";
  // A departed member pages only up to their leave in Synapse, even in a world-readable room.
  if (vis === "world_readable") return departedMember(kind) && later ? "allowed" : "required";
  // A current member must be shown all the spec allows: what was sent while they were joined,
  // invited (under invited or shared), or before they joined (under shared).
  if (membershipAt(kind, phase) === "join" || currentlyJoined(kind)) return "required";
  // A former member may see shared history from before their join (the spec says yes; Synapse's
  // and Tessera's /messages show only what they saw while joined), and a user invited at the
  // event may see it (a route may refuse them outright).
  return "allowed";
}

/** Verdict on the state routes: only the `name` marker is state; message markers never are. */
export function stateVerdict(vis: Visibility, kind: ReaderKind, phase: Phase): Verdict {
  if (!specAllows(vis, kind, phase)) return "forbidden";
  if (phase !== "name") return "allowed";
  if (currentlyJoined(kind)) return "required";
  // A world-readable room shows its current state to anyone who is not a former member; a
  // former member may be shown the state as they left it (spec, GET /state/{type}/{key}).
  if (vis === "world_readable" && !departedFromRoom(kind)) return "required";
  return "allowed";
}

/** The /sync requests the suite makes. */
export type SyncVariant =
  | "initial"
  | "since-before-room"
  | "since-before-membership"
  | "full-state"
  | "since-after-membership"
  | "federation";

/** Verdict for a marker in /sync for one variant. */
export function syncVerdict(
  vis: Visibility,
  kind: ReaderKind,
  phase: Phase,
  variant: SyncVariant,
): Verdict {
  // rooms.leave: "The timeline of messages and state changes in the room up to the point when
  // the user left", whatever the visibility.
  if (departedFromRoom(kind) && (phase === "after" || phase === "name")) return "forbidden";
  // Invites and knocks carry stripped state only, never timeline events.
  if (kind.second === undefined && (kind.first === "invite" || kind.first === "knock")) {
    return phase === "name" && specAllows(vis, kind, phase) ? "allowed" : "forbidden";
  }
  if (!specAllows(vis, kind, phase)) return "forbidden";
  if (kind.first === undefined) return "allowed"; // no peeking: the room is not in their sync
  // A `since` after a message leaves it out of the window (full_state changes the state section,
  // not the timeline).
  const outOfWindow = variant === "since-after-membership"
    ? phase === "before" || phase === "during"
    : phase === "before" && (variant === "since-before-membership" || variant === "full-state");
  if (outOfWindow) return "allowed";
  // What was sent while joined, and for a current member all the history they may see.
  if (membershipAt(kind, phase) === "join" || currentlyJoined(kind)) return "required";
  return "allowed";
}

/** Verdict for /notifications: notified while joined; nothing from outside that. */
export function notificationVerdict(vis: Visibility, kind: ReaderKind, phase: Phase): Verdict {
  if (!specAllows(vis, kind, phase)) return "forbidden";
  if (phase === "name") return "allowed"; // member events do not notify by default
  if (currentlyJoined(kind) && membershipAt(kind, phase) === "join") return "required";
  return "allowed";
}

/** Check each marker against its verdict in a response body; throws one message listing all. */
export function checkMarkers(
  label: string,
  body: unknown,
  expected: readonly { marker: string; phase: string; verdict: Verdict }[],
  enforceRequired = true,
): void {
  const text = JSON.stringify(body);
  const problems: string[] = [];
  for (const e of expected) {
    const present = text.includes(e.marker);
    if (e.verdict === "forbidden" && present) {
      const at = text.indexOf(e.marker);
      const around = text.slice(Math.max(0, at - 300), at + e.marker.length + 40);
      problems.push(`LEAK: ${e.marker} (${e.phase}) must not appear; found in …${around}…`);
    }
    if (e.verdict === "required" && enforceRequired && !present) {
      problems.push(`MISSING: ${e.marker} (${e.phase}) must appear`);
    }
  }
  assert(problems.length === 0, `${label}:\n  ${problems.join("\n  ")}\n  body: ${clip(text)}`);
}

/**
 * Check a response against an access rule; true when it is a 200 whose body needs checking.
 * `notFoundOk`: where the reader may be refused, 404 M_NOT_FOUND is a refusal too (a single
 * state entry the reader may not see "is not there" for them; it reveals nothing).
 */
export function checkAccess(
  label: string,
  res: JsonResponse,
  access: Access,
  notFoundOk = false,
): boolean {
  const desc = `${label}: ${res.status} ${clip(JSON.stringify(res.body))}`;
  if (access === "forbidden") {
    assert(
      res.status === 403 && res.body?.errcode === "M_FORBIDDEN",
      `want 403 M_FORBIDDEN, ${desc}`,
    );
    return false;
  }
  if (access === "ok") {
    assert(res.status === 200, `want 200, ${desc}`);
    return true;
  }
  const refused = (res.status === 403 && res.body?.errcode === "M_FORBIDDEN") ||
    (notFoundOk && res.status === 404 && res.body?.errcode === "M_NOT_FOUND");
  assert(
    res.status === 200 || refused,
    `want 200 or 403 M_FORBIDDEN${notFoundOk ? " or 404 M_NOT_FOUND" : ""}, ${desc}`,
  );
  return res.status === 200;
}

function clip(text: string): string {
  return text.length > 1500 ? `${text.slice(0, 1500)}…` : text;
}

/** A user with the sync token taken before any room of the suite existed. */
export interface Reader extends RegisteredUser {
  /** next_batch of a sync made before the first room was created. */
  sinceBeforeRooms: string;
}

/** One scenario's room. */
export interface ScenarioRoom {
  roomId: string;
  path: string;
  vis: Visibility;
  kind: ReaderKind;
  reader: Reader;
  /** Event IDs of the phase markers. */
  eventIds: Record<Phase, string>;
  /** The reader's next_batch just before their first membership (after `before`). */
  sinceBeforeMembership: string;
  /** The reader's next_batch after their last membership step, before the `after` message. */
  sinceAfterMembership: string;
}

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** The suite's server and users; rooms are built on demand, one per scenario. */
export class World {
  #txn = 0;

  private constructor(
    readonly server: Server,
    readonly owner: RegisteredUser,
    readonly readers: Map<string, Reader>,
  ) {}

  /** Start a server, register the owner and one reader per kind, and take their first tokens. */
  static async start(): Promise<World> {
    const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
    const owner = await registerUser(server, "owner");
    const readers = new Map<string, Reader>();
    for (const kind of READERS) {
      const user = await registerUser(server, `reader_${kind.name}`);
      const res = await server.request("GET", `${V3}/sync?timeout=0`, { token: user.accessToken });
      assert(res.status === 200, `first sync of ${kind.name}: ${res.status}`);
      readers.set(kind.name, { ...user, sinceBeforeRooms: res.body.next_batch });
    }
    return new World(server, owner, readers);
  }

  /** A request that must succeed; returns the body. */
  async ok(method: string, path: string, token: string, body?: unknown) {
    const res = await this.server.request(method, path, { token, body });
    assert(res.status === 200, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  /** Send a text message; returns its event ID. */
  async say(roomPath: string, token: string, body: string): Promise<string> {
    const path = `${roomPath}/send/m.room.message/t${++this.#txn}`;
    return (await this.ok("PUT", path, token, { msgtype: "m.text", body })).event_id;
  }

  /** The reader's next_batch now, syncing only `roomId`. */
  async syncToken(reader: Reader, roomId: string): Promise<string> {
    const filter = encodeURIComponent(JSON.stringify({ room: { rooms: [roomId] } }));
    return (await this.ok("GET", `${V3}/sync?timeout=0&filter=${filter}`, reader.accessToken))
      .next_batch;
  }

  /**
   * Build one scenario's room: `before` message, the reader's first step, `during`, the second
   * step, `after`, a rejoin if the kind rejoins, then the owner's display name change (`name`).
   */
  async room(vis: Visibility, kind: ReaderKind): Promise<ScenarioRoom> {
    const reader = this.readers.get(kind.name)!;
    const owner = this.owner.accessToken;
    const { room_id: roomId } = await this.ok("POST", `${V3}/createRoom`, owner, {
      preset: "private_chat",
      initial_state: [
        { type: "m.room.history_visibility", content: { history_visibility: vis } },
        { type: "m.room.join_rules", content: { join_rule: kind.joinRule } },
      ],
    });
    const path = `${V3}/rooms/${encodeURIComponent(roomId)}`;
    const eventIds = {} as Record<Phase, string>;
    eventIds.before = await this.say(path, owner, marker(vis, kind, "before"));
    const sinceBeforeMembership = await this.syncToken(reader, roomId);
    await this.membershipStep(kind, roomId, kind.first);
    eventIds.during = await this.say(path, owner, marker(vis, kind, "during"));
    await this.membershipStep(kind, roomId, kind.second);
    const sinceAfterMembership = await this.syncToken(reader, roomId);
    eventIds.after = await this.say(path, owner, marker(vis, kind, "after"));
    if (kind.rejoins) await this.membershipStep(kind, roomId, "join");
    eventIds.name = (await this.ok(
      "PUT",
      `${path}/state/m.room.member/${encodeURIComponent(this.owner.userId)}`,
      owner,
      { membership: "join", displayname: marker(vis, kind, "name") },
    )).event_id;
    return {
      roomId,
      path,
      vis,
      kind,
      reader,
      eventIds,
      sinceBeforeMembership,
      sinceAfterMembership,
    };
  }

  /** One of the reader's membership steps (invites, kicks and bans come from the owner). */
  async membershipStep(
    kind: ReaderKind,
    roomId: string,
    step: FirstStep | SecondStep | undefined,
  ): Promise<void> {
    const reader = this.readers.get(kind.name)!;
    const me = reader.accessToken;
    const owner = this.owner.accessToken;
    const path = `${V3}/rooms/${encodeURIComponent(roomId)}`;
    const join = `${V3}/join/${encodeURIComponent(roomId)}`;
    if (step === "invite") {
      await this.ok("POST", `${path}/invite`, owner, { user_id: reader.userId });
    }
    if (step === "knock") {
      await this.ok("POST", `${V3}/knock/${encodeURIComponent(roomId)}`, me, {});
    }
    if (step === "join" || step === "accept") await this.ok("POST", join, me, {});
    if (step === "leave") await this.ok("POST", `${path}/leave`, me, {});
    if (step === "kicked") await this.ok("POST", `${path}/kick`, owner, { user_id: reader.userId });
    if (step === "banned") await this.ok("POST", `${path}/ban`, owner, { user_id: reader.userId });
  }

  /** The reader's /sync for one variant, limited to the scenario's room. */
  sync(room: ScenarioRoom, variant: SyncVariant): Promise<JsonResponse> {
    const filter: Record<string, unknown> = {
      room: { rooms: [room.roomId], include_leave: true, timeline: { limit: 50 } },
    };
    if (variant === "federation") filter.event_format = "federation";
    let query = `timeout=0&filter=${encodeURIComponent(JSON.stringify(filter))}`;
    if (variant === "since-before-room") query += `&since=${room.reader.sinceBeforeRooms}`;
    if (variant === "since-before-membership" || variant === "full-state") {
      query += `&since=${room.sinceBeforeMembership}`;
    }
    if (variant === "full-state") query += "&full_state=true";
    if (variant === "since-after-membership") query += `&since=${room.sinceAfterMembership}`;
    return this.server.request("GET", `${V3}/sync?${query}`, { token: room.reader.accessToken });
  }

  /** Stop the server. */
  close(): void {
    this.server.close();
  }
}
