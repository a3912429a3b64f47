/**
 * Server ACLs (`m.room.server_acl`, spec "Server Access Control Lists"): which servers may take
 * part in a room. Applied at the network layer to every federation request that names a room
 * (the reads of routes/federation/event_reads.ts, /send per PDU and EDU, the membership handshakes), never by the
 * auth rules. The rule, in the spec's order:
 *
 * 1. no `m.room.server_acl` in the room's state: allow;
 * 2. the server name is an IP literal and `allow_ip_literals` is `false`: deny;
 * 3. the name matches a `deny` glob: deny;
 * 4. the name matches an `allow` glob: allow;
 * 5. otherwise deny (a missing `allow` denies every server).
 *
 * Matching ignores the port and case (v1.19), with `*` and `?` globs. Pure: callers pass the
 * ACL content; `RoomServerAcl` reads it from the room's current state.
 */
import { forbidden } from "../errors.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import type { EventReader } from "../ports/event_store.ts";
import { globMatches } from "../push/push_rule_evaluator.ts";

/** The event type of a room's server ACL. */
export const SERVER_ACL_TYPE = "m.room.server_acl";

/** An ACL as the rule reads it, with the spec's defaults for missing or malformed fields. */
export interface ServerAcl {
  allowIpLiterals: boolean;
  allow: readonly string[];
  deny: readonly string[];
}

/**
 * The ACL an `m.room.server_acl` content sets: `allow_ip_literals` defaults to true when it is
 * not a boolean, `allow` and `deny` to empty lists when not arrays; non-string entries never
 * match (as Synapse ignores them), so a malformed entry cannot widen or narrow access.
 */
export function parseServerAcl(content: unknown): ServerAcl {
  const c: JsonObject = isJsonObject(content) ? content : {};
  const strings = (v: unknown) =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  return {
    allowIpLiterals: typeof c.allow_ip_literals === "boolean" ? c.allow_ip_literals : true,
    allow: strings(c.allow),
    deny: strings(c.deny),
  };
}

/**
 * The host part of a server name, without its port: `example.org:8448` -> `example.org`,
 * `[::1]:8448` -> `[::1]` (an IPv6 literal keeps its brackets, as ACL entries write it).
 */
export function hostOfServerName(serverName: string): string {
  if (serverName.startsWith("[")) {
    const close = serverName.indexOf("]");
    return close < 0 ? serverName : serverName.slice(0, close + 1);
  }
  const colon = serverName.lastIndexOf(":");
  return colon < 0 ? serverName : serverName.slice(0, colon);
}

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Whether a host (port already stripped) is an IPv4 literal or a bracketed IPv6 literal. */
export function isIpLiteralHost(host: string): boolean {
  return host.startsWith("[") || IPV4.test(host);
}

/** Whether `serverName` passes the ACL (the spec's steps 2 to 5). */
export function serverAllowedByAcl(serverName: string, acl: ServerAcl): boolean {
  const host = hostOfServerName(serverName);
  if (!acl.allowIpLiterals && isIpLiteralHost(host)) return false;
  if (acl.deny.some((glob) => globMatches(glob, host, false))) return false;
  return acl.allow.some((glob) => globMatches(glob, host, false));
}

/**
 * Whether `serverName` may take part in a room whose ACL event has this content; `undefined`
 * (no ACL event in the state) allows every server (step 1).
 */
export function serverAllowedByAclContent(serverName: string, content: unknown): boolean {
  if (content === undefined) return true;
  return serverAllowedByAcl(serverName, parseServerAcl(content));
}

/** A room's ACL, read from its current state on each call (processes share the store). */
export class RoomServerAcl {
  /** Over the event store's current-state reads. */
  constructor(private readonly store: Pick<EventReader, "currentStateEventId" | "getEvent">) {}

  /** The content of the room's current `m.room.server_acl`, or undefined when it has none. */
  async content(roomId: string): Promise<JsonObject | undefined> {
    const id = await this.store.currentStateEventId(roomId, SERVER_ACL_TYPE, "");
    if (!id) return undefined;
    const event = await this.store.getEvent(id);
    return event?.pdu.content;
  }

  /** Whether `serverName` may take part in the room now. */
  async allows(roomId: string, serverName: string): Promise<boolean> {
    return serverAllowedByAclContent(serverName, await this.content(roomId));
  }

  /** Throws 403 M_FORBIDDEN when the room's ACL denies `serverName`. */
  async assertAllowed(roomId: string, serverName: string): Promise<void> {
    if (!(await this.allows(roomId, serverName))) {
      throw forbidden(`Server ${serverName} is denied by the room's server ACL`);
    }
  }
}
