/**
 * Guest accounts (spec: "Guest access"): created without credentials, marked on the account
 * and on every token they hold, and upgraded to full accounts by registering their own user ID
 * (Synapse's `guest_access_token`). Which endpoints a guest may call is routes/client/
 * guest_rules.ts; which rooms it may join is domain/rooms/guest_access.ts.
 */
import { forbidden, MatrixError } from "../errors.ts";
import type {
  AccountRecord,
  AccountStore,
  DeviceRecord,
  IssuedTokens,
} from "../ports/account_store.ts";
import type { DeviceOptions, IssuedSession } from "./account_service.ts";
import { newLocalpart } from "./tokens.ts";

/** A device record and its fresh tokens, not yet written. */
export interface PreparedDevice {
  device: DeviceRecord;
  tokens: IssuedTokens;
  issued: IssuedSession;
}

/** What guest accounts are built on: the account store and the account service's devices. */
export interface GuestAccountDeps {
  store: AccountStore;
  serverName: string;
  now: () => number;
  /** A new device with fresh tokens for `userId`, nothing written. */
  prepareDevice(userId: string, options: DeviceOptions): PreparedDevice;
  /** Log devices out (their tokens revoked), with the removal hooks. */
  deleteDevices(userId: string, deviceIds: string[]): Promise<void>;
  /** Announce a device that was added (device lists). */
  deviceAdded(userId: string, deviceId: string): Promise<void>;
}

/** Guest account use cases. */
export class GuestAccounts {
  /** Over the store and the account service's device handling. */
  constructor(private readonly deps: GuestAccountDeps) {}

  /** Whether a user is a guest account (one read of the account). */
  async isGuest(userId: string): Promise<boolean> {
    return (await this.deps.store.getAccount(userId))?.guest === true;
  }

  /**
   * Create a guest account with a server-chosen user ID and log its one device in. The token
   * is marked as a guest's, so every request it makes is held to the guest rules without
   * reading the account. No refresh token: a refreshed pair would be issued without the mark.
   */
  async register(displayName?: string): Promise<IssuedSession> {
    const userId = `@${newLocalpart()}:${this.deps.serverName}`;
    const account: AccountRecord = {
      userId,
      createdAt: this.deps.now(),
      deactivated: false,
      guest: true,
    };
    const { device, tokens, issued } = this.deps.prepareDevice(userId, { displayName });
    tokens.access.guest = true;
    if (!(await this.deps.store.createAccount(account, device, tokens))) {
      throw new MatrixError("M_USER_IN_USE", 400, "That user ID is already taken");
    }
    await this.deps.deviceAdded(userId, device.deviceId);
    return issued;
  }

  /**
   * Turn a guest account into a full one with the same user ID: it gets a password, loses the
   * guest mark, and its guest devices are logged out (their tokens carry the mark); a new
   * device is logged in unless `inhibitLogin`. 403 when `userId` is not a guest (any more).
   */
  async upgrade(
    userId: string,
    request: DeviceOptions & { passwordHash?: string; inhibitLogin?: boolean },
  ): Promise<{ userId: string } & Partial<IssuedSession>> {
    const { store } = this.deps;
    const before = await store.getAccount(userId);
    if (!before?.guest || before.deactivated) throw forbidden("Not a guest account");
    const after: AccountRecord = { ...before };
    delete after.guest;
    if (request.passwordHash !== undefined) after.passwordHash = request.passwordHash;
    const guestDevices = (await store.listDevices(userId)).map((d) => d.deviceId);
    const fresh = request.inhibitLogin ? undefined : this.deps.prepareDevice(userId, request);
    if (!(await store.replaceAccount(before, after, fresh?.device, fresh?.tokens))) {
      throw forbidden("The guest account changed while it was being upgraded; try again");
    }
    await this.deps.deleteDevices(
      userId,
      guestDevices.filter((id) => id !== fresh?.device.deviceId),
    );
    if (!fresh) return { userId };
    await this.deps.deviceAdded(userId, fresh.device.deviceId);
    return fresh.issued;
  }
}
