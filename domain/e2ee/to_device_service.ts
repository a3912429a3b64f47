/**
 * Send-to-device messaging: `/sendToDevice` resolves each recipient user's devices (`*` for all
 * of them), writes one message per device into its inbox under the sender's transaction ID,
 * and wakes the recipients' long-polls. Sync hands the messages out (to_device_stream.ts).
 *
 * Federation is not here yet. Recipients on other servers are skipped for now; the federation
 * issue turns them into `m.direct_to_device` EDUs (with a `message_id`) on a per-destination
 * outbox, written in the same commits as the local inboxes under the same transaction record,
 * i.e. one more consumer of the recipients this service resolves.
 */
import { mapLimited } from "../concurrency.ts";
import { invalidParam, tooLarge } from "../errors.ts";
import { parseDeviceId, parseUserId } from "../protocol/identifiers.ts";
import type { JsonObject } from "../protocol/json.ts";
import {
  compareRecipients,
  type ToDeviceDelivery,
  type ToDeviceStore,
} from "../ports/to_device_store.ts";

/** Largest stored message: the UTF-8 JSON of `{type, sender, content}` (a KV value is 64 KiB). */
export const MAX_TO_DEVICE_EVENT_BYTES = 65_000;
/** The device ID that means every device of the user. */
export const ALL_DEVICES = "*";
/**
 * Device look-ups in flight at once: a 4 MiB body can name over 100,000 users, which must not
 * become as many concurrent storage reads.
 */
const DEVICE_LOOKUPS_IN_FLIGHT = 32;

/** The body of one `/sendToDevice` request, after the edge checked its JSON shape. */
export interface SendToDeviceRequest {
  sender: string;
  senderDeviceId: string;
  txnId: string;
  eventType: string;
  /** userId -> (deviceId or `*`) -> content. */
  messages: Record<string, Record<string, JsonObject>>;
}

/** What the service reads and calls. */
export interface ToDeviceServiceDeps {
  store: ToDeviceStore;
  /** The devices of a local user (none for an unknown user). */
  devices: { listDevices(userId: string): Promise<readonly { deviceId: string }[]> };
  serverName: string;
  /** Wake the user's long-polling syncs after commit `versionstamp` (raw) completed. */
  notifyUser(userId: string, versionstamp: string): void;
}

/** Send-to-device use cases. */
export class ToDeviceService {
  /** Over its dependencies. */
  constructor(private readonly deps: ToDeviceServiceDeps) {}

  /**
   * Deliver a `/sendToDevice` request once per (sender, device, txnId): a repeat finishes what
   * an interrupted attempt left and never delivers a message twice. Bad input is refused
   * before anything is written.
   */
  async send(request: SendToDeviceRequest): Promise<void> {
    const local = this.#checkMessages(request);
    const txn = {
      sender: request.sender,
      senderDeviceId: request.senderDeviceId,
      txnId: request.txnId,
    };
    if ((await this.deps.store.transactionProgress(txn))?.done) return;
    const deliveries = await this.#resolve(local);
    await this.deps.store.deliver(txn, deliveries, (versionstamp, userIds) => {
      for (const userId of userIds) this.deps.notifyUser(userId, versionstamp);
    });
    await this.#dropOrphans(deliveries);
  }

  /** The `devicesRemovedHooks` entry: drop removed devices' inboxes and records. */
  async devicesRemoved(userId: string, deviceIds: readonly string[]): Promise<void> {
    for (const deviceId of deviceIds) await this.deps.store.removeDevice(userId, deviceId);
  }

  /**
   * Check every user ID, device ID and message size, encode each message once, and return the
   * local users' messages (remote ones wait for federation).
   */
  #checkMessages(request: SendToDeviceRequest): Map<string, Map<string, Uint8Array>> {
    const encoder = new TextEncoder();
    const local = new Map<string, Map<string, Uint8Array>>();
    for (const [userId, byDevice] of Object.entries(request.messages)) {
      const user = parseUserId(userId);
      if (!user.ok) throw invalidParam(user.reason);
      const encoded = new Map<string, Uint8Array>();
      for (const [deviceId, content] of Object.entries(byDevice)) {
        if (deviceId !== ALL_DEVICES) {
          const device = parseDeviceId(deviceId);
          if (!device.ok) throw invalidParam(device.reason);
        }
        const event = { type: request.eventType, sender: request.sender, content };
        const bytes = encoder.encode(JSON.stringify(event));
        if (bytes.byteLength > MAX_TO_DEVICE_EVENT_BYTES) {
          throw tooLarge(
            `To-device message for ${userId} ${deviceId} is over ${MAX_TO_DEVICE_EVENT_BYTES} bytes`,
          );
        }
        encoded.set(deviceId, bytes);
      }
      // Remote recipients: skipped until federation sends them as to-device EDUs.
      if (user.value.serverName !== this.deps.serverName || encoded.size === 0) continue;
      local.set(userId, encoded);
    }
    return local;
  }

  /**
   * One delivery per existing device: `*` reaches every device of the user, a message for a
   * named device replaces it there; unknown devices are skipped (as Synapse does). Sorted in
   * the store's recipient order.
   */
  async #resolve(local: Map<string, Map<string, Uint8Array>>): Promise<ToDeviceDelivery[]> {
    const users = [...local.keys()];
    const devices = await mapLimited(
      users,
      DEVICE_LOOKUPS_IN_FLIGHT,
      (userId) => this.deps.devices.listDevices(userId),
    );
    const deliveries: ToDeviceDelivery[] = [];
    users.forEach((userId, i) => {
      const byDevice = local.get(userId)!;
      const all = byDevice.get(ALL_DEVICES);
      for (const { deviceId } of devices[i]) {
        const event = byDevice.get(deviceId) ?? all;
        if (event) deliveries.push({ userId, deviceId, event });
      }
    });
    return deliveries.sort(compareRecipients);
  }

  /**
   * A device deleted while this request was resolving may have got its message after its
   * removal hook emptied the inbox. Looking again after the commit closes that race: either
   * this read sees the device gone, or the hook starts after it and finds the message.
   */
  async #dropOrphans(deliveries: readonly ToDeviceDelivery[]): Promise<void> {
    const byUser = new Map<string, Set<string>>();
    for (const d of deliveries) {
      let set = byUser.get(d.userId);
      if (!set) byUser.set(d.userId, set = new Set());
      set.add(d.deviceId);
    }
    await mapLimited([...byUser], DEVICE_LOOKUPS_IN_FLIGHT, async ([userId, sent]) => {
      const now = new Set((await this.deps.devices.listDevices(userId)).map((d) => d.deviceId));
      for (const deviceId of sent) {
        if (!now.has(deviceId)) await this.deps.store.removeDevice(userId, deviceId);
      }
    });
  }
}
