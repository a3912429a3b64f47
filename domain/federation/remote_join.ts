/**
 * Joining a room this server is not in (server-server spec "Joining Rooms"): resolve a remote
 * alias with `query/directory`, then for each candidate server in turn `make_join` (offering
 * every room version we speak), sign the join from the template, `send_join` (v2, v1 when the
 * server does not know v2), check the answer before storing any of it (send_join_checks.ts), and
 * store it in the order the event store's RemoteEventStore documents: outliers, the staged state
 * before the join, then the join event last.
 *
 * A large room's join takes many commits, so a pending-join record (PendingJoinStore) is written
 * before the first and removed after the last. A join cut short by a crash is finished from it by
 * a leased background job (`resumePending`) or on the user's next attempt: every step is
 * idempotent (outliers already held are skipped, staging is content-addressed, a second append of the join is a
 * duplicate), and before staging is recorded the same signed join is sent again to get the state.
 */
import { canonicalJsonBytes } from "../protocol/canonical_json.ts";
import { MatrixError, notFound } from "../errors.ts";
import type { Pdu } from "../protocol/events.ts";
import { parseRoomAlias, parseRoomId, requireValid } from "../protocol/identifiers.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../protocol/json.ts";
import type { CommitMutation, EventStore, NewEvent } from "../ports/event_store.ts";
import {
  type FederationResponse,
  type FederationTransport,
  FederationUnreachable,
} from "../ports/federation_transport.ts";
import type { PendingJoinRecord, PendingJoinStore } from "../ports/pending_join_store.ts";
import type { RemoteMembershipStore } from "../ports/remote_membership_store.ts";
import { type RoomVersion, roomVersion, supportedRoomVersions } from "../protocol/room_versions.ts";
import type { SigningKey } from "../protocol/signing.ts";
import { checkMembershipTemplate, signFromTemplate } from "./membership_template.ts";
import {
  checkSendJoinAnswer,
  type EventSignatureVerifier,
  SendJoinAnswerRefused,
} from "./send_join_checks.ts";

/** What joining remote rooms is built from. */
export interface RemoteJoinDeps {
  store: EventStore;
  transport: FederationTransport;
  serverName: string;
  signingKey: SigningKey;
  /** Part 2's verifyEventSignatures over the key ring. */
  verifySignatures: EventSignatureVerifier;
  pendingJoins: PendingJoinStore;
  /** A remote invite's servers (the inviter's) are candidates to join through. */
  remoteMemberships?: RemoteMembershipStore;
  now?: () => number;
  /** Writes riding in the join's commit (the room is no longer forgotten, say). */
  joinMutations?: (userId: string, roomId: string) => CommitMutation[];
  /** Called once a join is stored (the remote invite it answers is over, say). */
  afterJoin?: (userId: string, roomId: string) => Promise<void>;
}

/** A request to join a remote room. */
export interface RemoteJoinRequest {
  userId: string;
  roomId: string;
  /** Servers to ask, in order (`via`/`server_name`, the alias's servers, an inviter's server). */
  servers: readonly string[];
  /** The member event's content besides `membership` (profile, reason, the client's keys). */
  content?: JsonObject;
}

/** The most bytes of a join event we hold in a pending-join record (one KV value with the rest). */
const MAX_PENDING_JOIN_BYTES = 60_000;

/** Room versions we can join, for make_join's `ver` parameters. */
const VER_QUERY = supportedRoomVersions().map((v) => `ver=${encodeURIComponent(v.id)}`).join("&");

/** Joins remote rooms for local users. */
export class RemoteJoiner {
  // One join per user and room at a time in this process: a second request (a double click, a
  // client retry) waits for the first instead of making a second join event. Across processes
  // the store's idempotent steps keep two joins from corrupting each other.
  readonly #running = new Map<string, Promise<string>>();

  constructor(private readonly deps: RemoteJoinDeps) {}

  /**
   * Resolve an alias of another server through its `query/directory`: the room and the servers
   * it names as in the room. 404 when the server does not know it or cannot be reached.
   */
  async resolveAlias(alias: string): Promise<{ roomId: string; servers: string[] }> {
    const { serverName } = requireValid(parseRoomAlias(alias));
    let response: FederationResponse;
    try {
      response = await this.deps.transport.request({
        method: "GET",
        destination: serverName,
        path: `/_matrix/federation/v1/query/directory?room_alias=${encodeURIComponent(alias)}`,
      });
    } catch (error) {
      if (error instanceof FederationUnreachable) {
        throw notFound(`Room alias ${alias} could not be resolved: ${serverName} is unreachable`);
      }
      throw error;
    }
    const body = response.body;
    if (response.status !== 200 || !isJsonObject(body) || typeof body.room_id !== "string") {
      throw notFound(`Room alias ${alias} not found`);
    }
    const servers = Array.isArray(body.servers)
      ? body.servers.filter((s): s is string => typeof s === "string")
      : [];
    // The alias's own server knows the room: ask it too, after the ones it names.
    return { roomId: body.room_id, servers: unique([...servers, serverName]) };
  }

  /** Join `request.roomId` through the first candidate server that lets us; returns the join's ID. */
  join(request: RemoteJoinRequest): Promise<string> {
    const key = `${request.userId}\u0000${request.roomId}`;
    const running = this.#running.get(key);
    if (running) return running;
    const run = this.#join(request).finally(() => this.#running.delete(key));
    this.#running.set(key, run);
    return run;
  }

  async #join(request: RemoteJoinRequest): Promise<string> {
    const { userId, roomId } = request;
    const pending = await this.deps.pendingJoins.get(userId, roomId);
    if (pending !== null) {
      const finished = await this.#finish(pending).catch((error) => {
        console.warn("remote join: resuming failed, joining afresh", roomId, userId, error);
        return undefined;
      });
      if (finished !== undefined) return finished;
      await this.deps.pendingJoins.delete(userId, roomId);
    }
    const invite = await this.deps.remoteMemberships?.get(userId, roomId);
    const invited = invite ? [...invite.servers, serverOf(invite.pdu.sender)] : [];
    const servers = this.#candidates([...request.servers, ...invited], roomId);
    if (servers.length === 0) throw notFound(`No known servers to join ${roomId} through`);
    let lastError: MatrixError | undefined;
    for (const server of servers) {
      try {
        return await this.#joinThrough(server, servers, request);
      } catch (error) {
        if (error instanceof MatrixError && error.errcode === "M_INCOMPATIBLE_ROOM_VERSION") {
          throw error;
        }
        if (error instanceof MatrixError && error.errcode === "M_TOO_LARGE") throw error;
        if (!(error instanceof MatrixError || error instanceof FederationUnreachable)) throw error;
        console.warn("remote join: failed through", server, roomId, error.message);
        if (error instanceof MatrixError) lastError = pickError(lastError, error);
      }
    }
    throw lastError ??
      new MatrixError("M_UNKNOWN", 502, `No server could be reached to join ${roomId}`);
  }

  /** The joins under way (left by a crash, or running now). */
  pendingJoins(): Promise<PendingJoinRecord[]> {
    return this.deps.pendingJoins.list();
  }

  /**
   * Finish every join a dead process left under way (a leased background job runs it; see
   * domain/jobs/background_jobs.ts). Only joins started before `startedBefore`, so a join
   * another live process is still making is left to it; stops between joins once `signal`
   * aborts.
   */
  async resumePending(
    options: { startedBefore?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    for (const record of await this.deps.pendingJoins.list()) {
      if (options.signal?.aborted) return;
      if (options.startedBefore !== undefined && record.startedAt >= options.startedBefore) {
        continue;
      }
      try {
        await this.#finish(record);
      } catch (error) {
        // The record stays: the user's next attempt starts afresh from it.
        console.warn("remote join: could not resume", record.roomId, record.userId, error);
      }
    }
  }

  #candidates(given: readonly string[], roomId: string): string[] {
    const parsed = parseRoomId(roomId);
    // A room ID's server created the room; it may have left since, so it is tried last.
    const fromId = parsed.ok && parsed.value.kind === "server" ? [parsed.value.serverName] : [];
    return unique([...given, ...fromId]).filter((s) => s !== this.deps.serverName);
  }

  async #joinThrough(
    server: string,
    servers: string[],
    request: RemoteJoinRequest,
  ): Promise<string> {
    const { userId, roomId } = request;
    const made = await this.#request(server, {
      method: "GET",
      path: `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(userId)}?${VER_QUERY}`,
    });
    if (made.status !== 200) throw remoteError(server, "make_join", made);
    const { version, template } = checkMembershipTemplate(server, tupleRefs(made.body), {
      roomId,
      userId,
      membership: "join",
    });
    const built = await signFromTemplate({
      version,
      // The references as the resident gave them: it built them, and checks them on send_join.
      template: { ...template, ...referencesOf(made.body) },
      serverName: this.deps.serverName,
      signingKey: this.deps.signingKey,
      originServerTs: (this.deps.now ?? Date.now)(),
      content: request.content,
    });
    const size = canonicalJsonBytes(built.pdu, { strict: version.strictCanonicalJson }).length;
    if (size > MAX_PENDING_JOIN_BYTES) {
      throw new MatrixError("M_TOO_LARGE", 413, `The join event is ${size} bytes`);
    }
    const record: PendingJoinRecord = {
      roomId,
      userId,
      roomVersion: version.id,
      joinEventId: built.eventId,
      joinPdu: built.pdu,
      servers: unique([server, ...servers]),
      startedAt: (this.deps.now ?? Date.now)(),
    };
    await this.deps.pendingJoins.put(record);
    try {
      return await this.#sendAndStore(server, record, version);
    } catch (error) {
      // A server that refused or gave a bad answer leaves nothing worth resuming unless staging
      // began: the next server starts with a fresh template. Any other failure (storage, the
      // process) keeps the record, as a crash would.
      const remote = error instanceof MatrixError || error instanceof FederationUnreachable;
      const current = await this.deps.pendingJoins.get(userId, roomId);
      if (remote && current?.joinEventId === record.joinEventId && !current.staged) {
        await this.deps.pendingJoins.delete(userId, roomId);
      }
      throw error;
    }
  }

  /** A pending join: append the join when staged, else send the same join again and store. */
  async #finish(record: PendingJoinRecord): Promise<string> {
    const version = roomVersion(record.roomVersion);
    if (version === undefined) throw new Error(`unknown room version ${record.roomVersion}`);
    if (record.staged !== undefined) return await this.#appendJoin(record, record.joinPdu);
    let lastError: unknown;
    for (const server of record.servers) {
      try {
        return await this.#sendAndStore(server, record, version);
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError ?? new Error("no server to resume the join through");
  }

  /** send_join, check the answer, then store outliers, the state, and the join last. */
  async #sendAndStore(
    server: string,
    record: PendingJoinRecord,
    version: RoomVersion,
  ): Promise<string> {
    const answer = await this.#sendJoin(server, record);
    let checked;
    try {
      checked = await checkSendJoinAnswer({
        roomId: record.roomId,
        version,
        ownJoin: { eventId: record.joinEventId, pdu: record.joinPdu },
        serverName: this.deps.serverName,
        answer,
        verifySignatures: this.deps.verifySignatures,
      });
    } catch (error) {
      if (error instanceof SendJoinAnswerRefused) {
        throw new MatrixError("M_UNKNOWN", 502, `${server}'s send_join answer: ${error.message}`);
      }
      throw error;
    }
    // A few reasons in the log, then a count: a hostile answer may carry thousands.
    for (const { eventId, reason } of checked.dropped.slice(0, 5)) {
      console.warn(
        "remote join: dropped from the send_join answer",
        record.roomId,
        eventId,
        reason,
      );
    }
    if (checked.dropped.length > 5) {
      console.warn(`remote join: ${checked.dropped.length} events dropped in all`, record.roomId);
    }
    const outliers: NewEvent[] = [];
    for (const e of checked.events.values()) {
      outliers.push({ eventId: e.eventId, pdu: e.pdu, status: "accepted" });
    }
    await this.deps.store.storeOutliers(record.roomId, outliers);
    const staged = await this.deps.store.stageState(
      record.roomId,
      version.id,
      checked.stateBefore,
    );
    const next: PendingJoinRecord = { ...record, staged, joinPdu: checked.join.pdu };
    await this.deps.pendingJoins.put(next);
    return await this.#appendJoin(next, checked.join.pdu);
  }

  async #sendJoin(server: string, record: PendingJoinRecord): Promise<JsonValue | null> {
    const path = (v: string) =>
      `/_matrix/federation/${v}/send_join/${enc(record.roomId)}/${enc(record.joinEventId)}`;
    const body = record.joinPdu as unknown as JsonValue;
    let answer = await this.#request(server, { method: "PUT", path: path("v2"), body });
    if (isUnrecognised(answer)) {
      answer = await this.#request(server, { method: "PUT", path: path("v1"), body });
    }
    if (answer.status !== 200) throw remoteError(server, "send_join", answer);
    return answer.body;
  }

  async #appendJoin(record: PendingJoinRecord, pdu: Pdu): Promise<string> {
    const { roomId, userId } = record;
    const extra = this.deps.joinMutations;
    const result = await this.deps.store.append({
      roomId,
      roomVersion: record.roomVersion,
      events: [{
        eventId: record.joinEventId,
        pdu,
        status: "accepted",
        checkState: true,
        stateBefore: record.staged,
      }],
      extraMutations: extra ? () => extra(userId, roomId) : undefined,
    });
    await this.deps.pendingJoins.delete(userId, roomId);
    const appended = result.events[0];
    if (appended.status !== "accepted") {
      throw new MatrixError(
        "M_FORBIDDEN",
        403,
        `The join was ${appended.status} by the room's state`,
      );
    }
    await this.deps.afterJoin?.(userId, roomId);
    return record.joinEventId;
  }

  #request(
    destination: string,
    request: { method: "GET" | "PUT"; path: string; body?: JsonValue },
  ): Promise<FederationResponse> {
    return this.deps.transport.request({ ...request, destination });
  }
}

/**
 * A make_join answer naming no room version means version 1, whose references are
 * `[id, {sha256}]` pairs; some servers still send bare IDs (SyTest's does for versions it made
 * up). Checked as pairs with no hash, so the join goes on to send_join (with the references as
 * given), where the room's create event says what the room really is.
 */
function tupleRefs(body: JsonValue | null): JsonValue | null {
  if (!isJsonObject(body) || body.room_version !== undefined || !isJsonObject(body.event)) {
    return body;
  }
  const pairs = (refs: JsonValue | undefined) =>
    Array.isArray(refs) ? refs.map((r) => (typeof r === "string" ? [r, {}] : r)) : refs;
  const event: JsonObject = { ...body.event };
  if (event.prev_events !== undefined) event.prev_events = pairs(event.prev_events)!;
  if (event.auth_events !== undefined) event.auth_events = pairs(event.auth_events)!;
  return { ...body, event };
}

/** The template's prev_events and auth_events exactly as the resident sent them. */
function referencesOf(body: JsonValue | null): JsonObject {
  const event = isJsonObject(body) && isJsonObject(body.event) ? body.event : {};
  const refs: JsonObject = {};
  if (event.prev_events !== undefined) refs.prev_events = event.prev_events;
  if (event.auth_events !== undefined) refs.auth_events = event.auth_events;
  return refs;
}

function enc(value: string): string {
  return encodeURIComponent(value);
}

function serverOf(userId: string): string {
  return userId.slice(userId.indexOf(":") + 1);
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

/** 404, or 400 M_UNRECOGNIZED: the server does not serve this endpoint (send_join v2). */
function isUnrecognised(response: FederationResponse): boolean {
  if (response.status === 404 && !isMatrixErrorBody(response.body, "M_NOT_FOUND")) return true;
  return response.status === 400 && isMatrixErrorBody(response.body, "M_UNRECOGNIZED");
}

function isMatrixErrorBody(body: JsonValue | null, errcode: string): boolean {
  return isJsonObject(body) && body.errcode === errcode;
}

/** A remote refusal as the client should see it: the remote errcode and status when 4xx. */
function remoteError(server: string, what: string, response: FederationResponse): MatrixError {
  const body = isJsonObject(response.body) ? response.body : {};
  const errcode = typeof body.errcode === "string" ? body.errcode : "M_UNKNOWN";
  const message = typeof body.error === "string" ? body.error : `status ${response.status}`;
  const status = response.status >= 400 && response.status < 500 ? response.status : 502;
  // M_INCOMPATIBLE_ROOM_VERSION names the version, which the client needs to see.
  const extra = typeof body.room_version === "string" ? { room_version: body.room_version } : {};
  return new MatrixError(errcode, status, `${server} refused ${what}: ${message}`, extra);
}

/** Keep the most telling of two failures: a refusal (403) over anything else. */
function pickError(previous: MatrixError | undefined, next: MatrixError): MatrixError {
  if (previous?.status === 403 && next.status !== 403) return previous;
  return next;
}
