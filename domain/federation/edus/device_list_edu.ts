/**
 * Inbound `m.device_list_update` EDUs (spec, Server-Server API: "Device Management"): one
 * device of one user of the sending server changed (`{user_id, device_id, stream_id,
 * prev_id: [...], deleted?, device_display_name?, keys?}`). Taken by the remote device-list
 * cache in order (the dispatcher hands EDUs of one type over one by one, in the order sent),
 * which applies it, skips it as seen, or resyncs the user's whole list on a gap
 * (domain/e2ee/remote_device_updates.ts).
 *
 * Dropped: a user of another server than the sender, a user who shares no room with us (the
 * cache checks), and malformed content (a bad field drops the EDU; bad keys drop only the keys,
 * as the resync path does: the device still exists on its server).
 */
import type { JsonObject } from "../../protocol/json.ts";
import { parseUserId } from "../../protocol/identifiers.ts";
import type { DeviceListUpdateEdu } from "../../e2ee/remote_device_updates.ts";
import type { RemoteDeviceCache, UpdateOutcome } from "../../e2ee/remote_device_cache.ts";
import type { EduHandler } from "../edu_input.ts";
import {
  checkedRemoteDeviceKeys,
  checkedRemoteDisplayName,
  MAX_REMOTE_DEVICE_ID_LENGTH,
} from "../remote_keys.ts";

/** The EDU type. */
export const DEVICE_LIST_UPDATE_EDU = "m.device_list_update";

/** prev_ids an update may name (Synapse names one). */
const MAX_PREV_IDS = 16;

/** Hands valid updates from their user's own server to the cache. */
export class DeviceListEduHandler implements EduHandler {
  /** Over the cache. */
  constructor(
    private readonly cache: Pick<RemoteDeviceCache, "applyUpdate">,
    private readonly log: (message: string, ...details: unknown[]) => void = console.warn,
  ) {}

  /** Take one EDU (see the module comment). */
  async handle(origin: string, content: JsonObject): Promise<void> {
    await this.take(origin, content);
  }

  /** As `handle`, saying what happened (tests). */
  async take(origin: string, content: JsonObject): Promise<UpdateOutcome | "dropped"> {
    const update = parseDeviceListUpdate(content);
    if (update === null) return "dropped";
    const parsed = parseUserId(update.userId);
    if (!parsed.ok || parsed.value.serverName !== origin) {
      this.log(`federation: ${origin} sent a device-list update for ${update.userId}; dropped`);
      return "dropped";
    }
    return await this.cache.applyUpdate(update);
  }
}

/** The update an EDU's content describes; null when malformed. */
export function parseDeviceListUpdate(content: JsonObject): DeviceListUpdateEdu | null {
  const { user_id: userId, device_id: deviceId } = content;
  if (typeof userId !== "string" || userId.length > 255 || !parseUserId(userId).ok) return null;
  if (
    typeof deviceId !== "string" || deviceId.length === 0 ||
    deviceId.length > MAX_REMOTE_DEVICE_ID_LENGTH
  ) return null;
  const streamId = streamPosition(content.stream_id);
  if (streamId === null) return null;
  const rawPrev = content.prev_id ?? [];
  if (!Array.isArray(rawPrev) || rawPrev.length > MAX_PREV_IDS) return null;
  const prevIds: number[] = [];
  for (const p of rawPrev) {
    const id = streamPosition(p);
    if (id === null) return null;
    prevIds.push(id);
  }
  if (content.deleted !== undefined && typeof content.deleted !== "boolean") return null;
  const update: DeviceListUpdateEdu = {
    userId,
    deviceId,
    streamId,
    prevIds,
    deleted: content.deleted === true,
  };
  const displayName = checkedRemoteDisplayName(content.device_display_name);
  if (displayName !== undefined) update.displayName = displayName;
  const keys = checkedRemoteDeviceKeys(content.keys, userId, deviceId);
  if (keys !== undefined) update.keys = keys;
  return update;
}

/** A stream position: a non-negative safe integer (Synapse sends numbers; strings of digits too). */
function streamPosition(value: unknown): number | null {
  if (typeof value === "string" && /^[0-9]{1,15}$/.test(value)) return Number(value);
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return value;
  return null;
}
