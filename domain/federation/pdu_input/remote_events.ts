/**
 * What the incoming-PDU handler asks of the server that sent a PDU: its auth chain
 * (`/event_auth`), single events (`/event`), the events between our forward extremities and
 * the PDU (`/get_missing_events`), and the state at an event (`/state_ids`, `/state`). Every answer is
 * raw material: the caller checks each event as it would any PDU. A server that does not
 * answer usefully gives an empty answer, never an exception, so one bad peer costs only the
 * PDU it sent.
 */
import { isJsonObject, type JsonValue } from "../../protocol/json.ts";
import type { FederationTransport } from "../../ports/federation_transport.ts";

/** How long one of these requests may take: a slow peer holds up only its own PDU. */
const REQUEST_TIMEOUT_MS = 20_000;

/** The requests, to one server. */
export interface RemoteEventSource {
  /** The auth chain of `eventId` (`/event_auth`); [] when unavailable. */
  authChain(roomId: string, eventId: string): Promise<unknown[]>;
  /** One event (`/event`); undefined when unavailable. */
  event(eventId: string): Promise<unknown | undefined>;
  /** Events walking back from `latest` and stopping at `earliest` (`/get_missing_events`). */
  missingEvents(
    roomId: string,
    request: { earliest: string[]; latest: string[]; limit: number; minDepth: number },
  ): Promise<unknown[]>;
  /** The state before `eventId` and its auth chain as events (`/state`); [] when unavailable. */
  state(roomId: string, eventId: string): Promise<unknown[]>;
  /** The state before `eventId` and its auth chain, as IDs (`/state_ids`); undefined on failure. */
  stateIds(
    roomId: string,
    eventId: string,
  ): Promise<{ pduIds: string[]; authChainIds: string[] } | undefined>;
}

/** The source over a transport, asking `destination`. */
export function remoteEventSource(
  transport: FederationTransport,
  destination: string,
): RemoteEventSource {
  const call = async (
    method: "GET" | "POST",
    path: string,
    body?: JsonValue,
  ): Promise<Record<string, unknown> | undefined> => {
    try {
      const response = await transport.request({
        method,
        destination,
        path,
        timeoutMs: REQUEST_TIMEOUT_MS,
        ...(body !== undefined ? { body } : {}),
      });
      return response.status === 200 && isJsonObject(response.body) ? response.body : undefined;
    } catch (error) {
      console.warn(`federation: ${method} ${path} to ${destination} failed`, String(error));
      return undefined;
    }
  };
  const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
  const ids = (value: unknown): string[] | undefined =>
    Array.isArray(value) && value.every((v) => typeof v === "string") ? value : undefined;
  const enc = encodeURIComponent;
  return {
    async authChain(roomId, eventId) {
      const body = await call(
        "GET",
        `/_matrix/federation/v1/event_auth/${enc(roomId)}/${enc(eventId)}`,
      );
      return list(body?.auth_chain);
    },
    async event(eventId) {
      const body = await call("GET", `/_matrix/federation/v1/event/${enc(eventId)}`);
      const pdus = list(body?.pdus);
      return pdus.length === 1 ? pdus[0] : undefined;
    },
    async missingEvents(roomId, request) {
      const body = await call("POST", `/_matrix/federation/v1/get_missing_events/${enc(roomId)}`, {
        earliest_events: request.earliest,
        latest_events: request.latest,
        limit: request.limit,
        min_depth: request.minDepth,
      });
      return list(body?.events);
    },
    async state(roomId, eventId) {
      const body = await call(
        "GET",
        `/_matrix/federation/v1/state/${enc(roomId)}?event_id=${enc(eventId)}`,
      );
      return [...list(body?.pdus), ...list(body?.auth_chain)];
    },
    async stateIds(roomId, eventId) {
      const body = await call(
        "GET",
        `/_matrix/federation/v1/state_ids/${enc(roomId)}?event_id=${enc(eventId)}`,
      );
      const pduIds = ids(body?.pdu_ids);
      const authChainIds = ids(body?.auth_chain_ids);
      return pduIds && authChainIds ? { pduIds, authChainIds } : undefined;
    },
  };
}
