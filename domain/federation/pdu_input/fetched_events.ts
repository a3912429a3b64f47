/**
 * Events we pulled from another server to check or place a PDU (its missing auth events, the
 * state before a gap): each goes through steps 1 to 4 itself (format, signatures, content
 * hash, its own auth events) and is stored as an outlier, outside the room's timeline, with
 * the status step 4 gave it. Events that fail steps 1 or 2, or whose own auth events nobody
 * supplied, are left out: they cannot be checked, so nothing may rest on them.
 */
import { mapLimited } from "../../concurrency.ts";
import { toRoomEvent } from "../../protocol/events.ts";
import type { RoomVersion } from "../../protocol/room_versions.ts";
import { authEventIdsNeeded, authoriseByAuthEvents } from "./auth_events.ts";
import { applyContentHash } from "./content_hash.ts";
import { checkPduFormat } from "./format.ts";
import { checkSignatures, type SignatureVerifier } from "./signatures.ts";
import type { HeldEvent } from "./types.ts";

/**
 * Signature checks of fetched events in flight at once (each may fetch a server's keys): a
 * remote answer names as many servers as its sender likes.
 */
export const SIGNATURE_CHECK_CONCURRENCY = 32;

/** What admitting fetched events reads and writes. */
export interface FetchedEventSinks {
  /** Events we hold (log or outliers) among `ids`; unknown ones are absent. */
  held(ids: readonly string[]): Promise<Map<string, HeldEvent>>;
  /** Store checked events as outliers (skipping any already held). */
  storeOutliers(events: HeldEvent[]): Promise<void>;
  verify: SignatureVerifier;
}

/**
 * Check the PDUs in `raws` (fetched for `roomId`) and store those that can be checked as
 * outliers. Returns every event now held among them, with those we already held.
 */
export async function admitFetchedEvents(
  roomId: string,
  version: RoomVersion,
  raws: readonly unknown[],
  sinks: FetchedEventSinks,
): Promise<Map<string, HeldEvent>> {
  const candidates = new Map<string, HeldEvent>();
  for (const raw of raws) {
    const format = checkPduFormat(raw, roomId, version);
    if (!format.ok || candidates.has(format.value.eventId)) continue;
    candidates.set(format.value.eventId, {
      eventId: format.value.eventId,
      pdu: format.value.pdu,
      status: "accepted",
    });
  }
  const alreadyHeld = await sinks.held([...candidates.keys()]);
  for (const id of alreadyHeld.keys()) candidates.delete(id);

  // A few at a time: each check may fetch a key from the server an event names, and the
  // events are the sender's choice (a send_join or /state answer of thousands of servers).
  const verified = await mapLimited(
    [...candidates.values()],
    SIGNATURE_CHECK_CONCURRENCY,
    async (c) => ({ candidate: c, check: await checkSignatures(c.pdu, version, sinks.verify) }),
  );
  for (const { candidate, check } of verified) {
    if (!check.ok) candidates.delete(candidate.eventId);
    else candidate.pdu = applyContentHash(candidate.pdu, version).pdu;
  }

  // Everything the candidates cite that is not among them must already be held.
  const cited = new Set<string>();
  for (const c of candidates.values()) {
    const event = toRoomEvent(c.pdu, c.eventId, version);
    for (const id of authEventIdsNeeded(event, version)) if (!candidates.has(id)) cited.add(id);
  }
  const known = new Map([...alreadyHeld, ...(await sinks.held([...cited]))]);

  const decided: HeldEvent[] = [];
  for (const candidate of authOrder(candidates, version)) {
    const event = toRoomEvent(candidate.pdu, candidate.eventId, version);
    if (authEventIdsNeeded(event, version).some((id) => !known.has(id))) continue;
    const decision = authoriseByAuthEvents(event, known, version);
    candidate.status = decision.allowed ? "accepted" : "rejected";
    known.set(candidate.eventId, candidate);
    decided.push(candidate);
  }
  if (decided.length > 0) await sinks.storeOutliers(decided);
  const result = new Map(alreadyHeld);
  for (const d of decided) result.set(d.eventId, d);
  return result;
}

/**
 * The candidates with each one after the candidates among its auth events (Kahn's algorithm);
 * events on a cycle, which no honest auth chain has, are left out.
 */
function authOrder(candidates: Map<string, HeldEvent>, version: RoomVersion): HeldEvent[] {
  const waitingOn = new Map<string, number>();
  const dependants = new Map<string, string[]>();
  for (const c of candidates.values()) {
    const needed = authEventIdsNeeded(toRoomEvent(c.pdu, c.eventId, version), version);
    const inside = [...new Set(needed)].filter((id) => candidates.has(id));
    waitingOn.set(c.eventId, inside.length);
    for (const id of inside) dependants.set(id, [...(dependants.get(id) ?? []), c.eventId]);
  }
  const ready = [...waitingOn].filter(([, n]) => n === 0).map(([id]) => id);
  const order: HeldEvent[] = [];
  while (ready.length > 0) {
    const id = ready.pop()!;
    order.push(candidates.get(id)!);
    for (const next of dependants.get(id) ?? []) {
      const left = waitingOn.get(next)! - 1;
      waitingOn.set(next, left);
      if (left === 0) ready.push(next);
    }
  }
  return order;
}
