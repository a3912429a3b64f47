/**
 * `m.direct_to_device` EDUs (spec, server-server API: "Send-to-device messaging"):
 * `{sender, type, message_id, messages: {userId: {deviceId or "*": content}}}`.
 *
 * Outbound (`directToDeviceEdus`): a `/sendToDevice` request's recipients on one server become
 * one EDU, or several when they would not fit one outbox entry (a KV value holds 64 KiB), each
 * with its own `message_id`. IDs are derived from (sender, device, txnId, destination, part), so
 * the same request always makes the same EDUs and a receiver deduplicating by message_id drops a
 * duplicate whatever happened in between.
 *
 * Inbound (`DirectToDeviceEduHandler`): the sender must be a user of the origin (else the EDU is
 * dropped), recipients must be local users (others are dropped), each message is bounded as a
 * local one is; the messages are delivered once per (origin, message_id) by the to-device
 * service. The dispatcher hands one type's EDUs over one after another, so one sender's
 * messages land in the order sent.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeBase64UrlUnpadded } from "../../protocol/base64.ts";
import { canonicalJsonBytes } from "../../protocol/canonical_json.ts";
import { parseDeviceId, parseUserId } from "../../protocol/identifiers.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "../../protocol/json.ts";
import type { EduHandler } from "../edu_input.ts";
import type { Edu } from "../federation_transactions.ts";

/** The EDU type. */
export const DIRECT_TO_DEVICE_EDU = "m.direct_to_device";
/**
 * Largest EDU content, as `storedSizeBound` counts it: an outbox entry (this plus a small
 * wrapper) must stay under KV's 65,536-byte value limit, with a margin.
 */
export const MAX_DIRECT_TO_DEVICE_EDU_BYTES = 60 * 1024;
/** Longest `message_id` and `type` accepted from another server (IDs are capped at 255 bytes). */
const MAX_FIELD_LENGTH = 255;
/** Most (user, device) entries taken from one inbound EDU; the rest are dropped. */
export const MAX_INBOUND_ENTRIES_PER_EDU = 10_000;
/**
 * Most message bytes (before `*` fans out) taken from one inbound EDU: what one local request
 * may carry (a 4 MiB body); the rest are dropped.
 */
export const MAX_INBOUND_BYTES_PER_EDU = 4 * 1024 * 1024;

/** One message for one remote recipient, with the size it adds to an EDU. */
export interface RemoteToDeviceEntry {
  userId: string;
  /** A device ID or `*`. */
  deviceId: string;
  content: JsonObject;
}

/** What a `/sendToDevice` request's EDUs are named after. */
export interface DirectToDeviceSource {
  sender: string;
  senderDeviceId: string;
  txnId: string;
  eventType: string;
}

/**
 * An upper bound of the bytes `value` takes both as JSON on the wire and in a KV value (V8's
 * serialisation: one byte per character of a Latin-1 string, two of any other; a few bytes of
 * tag and length per item).
 */
export function storedSizeBound(value: JsonValue): number {
  if (typeof value === "string") {
    let wide = false;
    let utf8 = 0;
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if (c > 0xff) wide = true;
      // JSON escapes quotes, backslashes and \b \f \n \r \t in two bytes, other control
      // characters in six.
      if (c === 0x22 || c === 0x5c || (c >= 0x08 && c <= 0x0d && c !== 0x0b)) utf8 += 2;
      else if (c < 0x20) utf8 += 6;
      else if (c < 0x80) utf8++;
      else if (c < 0x800) utf8 += 2;
      else utf8 += 3;
    }
    return 8 + Math.max(utf8, wide ? 2 * value.length : value.length);
  }
  if (typeof value === "number") return 24;
  if (value === null || typeof value === "boolean") return 6;
  let n = 8;
  if (Array.isArray(value)) {
    for (const item of value) n += storedSizeBound(item) + 1;
    return n;
  }
  for (const [key, item] of Object.entries(value)) {
    n += storedSizeBound(key) + storedSizeBound(item) + 2;
  }
  return n;
}

/** The bytes one entry adds to an EDU holding other entries of its user (see storedSizeBound). */
export function entrySizeBound(entry: RemoteToDeviceEntry): number {
  return storedSizeBound(entry.deviceId) + storedSizeBound(entry.content) + 2;
}

/** The bytes a user's first entry in an EDU adds besides the entry itself. */
function userSizeBound(userId: string): number {
  return storedSizeBound(userId) + 10;
}

/** The bytes of an EDU's fixed fields (sender, type, message_id) and its outbox wrapper. */
function envelopeSizeBound(source: DirectToDeviceSource): number {
  return storedSizeBound({
    sender: source.sender,
    type: source.eventType,
    message_id: "x".repeat(32),
    messages: {},
    kind: "edu",
    edu_type: DIRECT_TO_DEVICE_EDU,
  }) + 64;
}

/** Whether `entry` fits one EDU on its own (else the request is refused as too large). */
export function fitsOneEdu(source: DirectToDeviceSource, entry: RemoteToDeviceEntry): boolean {
  return envelopeSizeBound(source) + userSizeBound(entry.userId) + entrySizeBound(entry) <=
    MAX_DIRECT_TO_DEVICE_EDU_BYTES;
}

/** The `message_id` of part `part` of a request's EDUs for `destination`. */
export function directToDeviceMessageId(
  source: DirectToDeviceSource,
  destination: string,
  part: number,
): string {
  const name = [source.sender, source.senderDeviceId, source.txnId, destination, part];
  return encodeBase64UrlUnpadded(sha256(canonicalJsonBytes(name)).slice(0, 18));
}

/**
 * The EDUs carrying `entries` (all for users of `destination`, each of which `fitsOneEdu`) in
 * order: as few as fit MAX_DIRECT_TO_DEVICE_EDU_BYTES each, numbered from part 0.
 */
export function directToDeviceEdus(
  source: DirectToDeviceSource,
  destination: string,
  entries: readonly RemoteToDeviceEntry[],
): Edu[] {
  const envelope = envelopeSizeBound(source);
  const edus: Edu[] = [];
  // Maps, turned into objects with Object.fromEntries: a device ID such as "__proto__" stays
  // an ordinary key.
  let messages = new Map<string, [string, JsonObject][]>();
  let size = envelope;
  const flush = () => {
    if (messages.size === 0) return;
    const byUser = [...messages].map(([userId, list]) => [userId, Object.fromEntries(list)]);
    edus.push({
      edu_type: DIRECT_TO_DEVICE_EDU,
      content: {
        sender: source.sender,
        type: source.eventType,
        message_id: directToDeviceMessageId(source, destination, edus.length),
        messages: Object.fromEntries(byUser),
      },
    });
    messages = new Map();
    size = envelope;
  };
  const added = (entry: RemoteToDeviceEntry) =>
    entrySizeBound(entry) + (messages.has(entry.userId) ? 0 : userSizeBound(entry.userId));
  for (const entry of entries) {
    if (messages.size > 0 && size + added(entry) > MAX_DIRECT_TO_DEVICE_EDU_BYTES) flush();
    size += added(entry);
    const list = messages.get(entry.userId);
    if (list) list.push([entry.deviceId, entry.content]);
    else messages.set(entry.userId, [[entry.deviceId, entry.content]]);
  }
  flush();
  return edus;
}

/** Another server's to-device messages, checked: what the to-device service delivers. */
export interface RemoteToDeviceMessages {
  origin: string;
  messageId: string;
  sender: string;
  eventType: string;
  /** Local userId -> (deviceId or `*`) -> content. */
  messages: Map<string, Map<string, JsonObject>>;
}

/** What the inbound handler calls. */
export interface DirectToDeviceEduDeps {
  serverName: string;
  /** Deliver checked messages once per (origin, message_id) (ToDeviceService.receiveRemote). */
  deliver(messages: RemoteToDeviceMessages): Promise<void>;
  /** Largest stored message (the local limit, MAX_TO_DEVICE_EVENT_BYTES). */
  maxEventBytes: number;
  /** Where dropped EDUs are reported. */
  log?: (message: string, ...details: unknown[]) => void;
}

/** The EduDispatcher's handler of `m.direct_to_device`. */
export class DirectToDeviceEduHandler implements EduHandler {
  /** Over its dependencies. */
  constructor(private readonly deps: DirectToDeviceEduDeps) {}

  /** See EduHandler.handle: check, drop what `origin` may not send, deliver the rest. */
  async handle(origin: string, content: JsonObject): Promise<void> {
    const log = this.deps.log ?? console.warn;
    const { sender, type, message_id: messageId, messages } = content;
    if (
      typeof sender !== "string" || typeof type !== "string" || typeof messageId !== "string" ||
      !isJsonObject(messages) || type.length === 0 || type.length > MAX_FIELD_LENGTH ||
      messageId.length === 0 || messageId.length > MAX_FIELD_LENGTH
    ) {
      log(`federation: malformed ${DIRECT_TO_DEVICE_EDU} from ${origin} dropped`);
      return;
    }
    const parsedSender = parseUserId(sender);
    if (!parsedSender.ok || parsedSender.value.serverName !== origin) {
      log(`federation: ${DIRECT_TO_DEVICE_EDU} from ${origin} for sender ${sender} dropped`);
      return;
    }
    const encoder = new TextEncoder();
    const checked = new Map<string, Map<string, JsonObject>>();
    let entries = 0;
    let bytes = 0;
    let full = false;
    for (const [userId, byDevice] of Object.entries(messages)) {
      if (full) break;
      const user = parseUserId(userId);
      if (!user.ok || user.value.serverName !== this.deps.serverName) continue;
      if (!isJsonObject(byDevice)) continue;
      const kept = new Map<string, JsonObject>();
      for (const [deviceId, message] of Object.entries(byDevice)) {
        if (!isJsonObject(message)) continue;
        if (deviceId !== "*" && !parseDeviceId(deviceId).ok) continue;
        const size = encoder.encode(JSON.stringify({ type, sender, content: message })).byteLength;
        if (size > this.deps.maxEventBytes) continue;
        if (entries >= MAX_INBOUND_ENTRIES_PER_EDU || bytes + size > MAX_INBOUND_BYTES_PER_EDU) {
          log(`federation: ${DIRECT_TO_DEVICE_EDU} ${messageId} from ${origin} cut short`);
          full = true;
          break;
        }
        entries++;
        bytes += size;
        kept.set(deviceId, message);
      }
      if (kept.size > 0) checked.set(userId, kept);
    }
    if (checked.size === 0) return;
    await this.deps.deliver({ origin, messageId, sender, eventType: type, messages: checked });
  }
}
