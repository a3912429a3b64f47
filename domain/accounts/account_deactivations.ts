/**
 * Account deactivation and its follow-up work. The account is marked deactivated (and pending)
 * in one commit, so it stops working in every process at once; the rest (logging out every
 * device, the hooks that leave rooms, reject invites and drop per-user data) runs after, and a
 * deactivation a dead process or a failed hook left pending is finished by the leased
 * `resume-deactivations` job or by the next login attempt on the account.
 */
import type { AccountRecord, AccountStore } from "../ports/account_store.ts";

/** What deactivation needs from the account service. */
export interface AccountDeactivationsOptions {
  store: AccountStore;
  /** The account, refused (403) when unknown or already deactivated. */
  activeAccount(userId: string): Promise<AccountRecord>;
  /** Delete every device of the user, with the device hooks. */
  logoutAll(userId: string): Promise<void>;
}

/** Deactivations: the first commit, the follow-up work, and resuming what was left pending. */
export class AccountDeactivations {
  /**
   * Called after an account is deactivated (and its devices removed), so areas drop data kept
   * per user rather than per device, such as key backups, and leave the user's rooms. With
   * `erase` (the client's request, kept on the account) the profile goes too. Idempotent, like
   * the device hooks.
   */
  readonly hooks: ((userId: string, options: { erase: boolean }) => Promise<void>)[] = [];
  /** Deactivations this process is finishing, so two triggers do not run the work twice. */
  private readonly finishing = new Map<string, Promise<boolean>>();

  /** Over the account service's store and device operations. */
  constructor(private readonly options: AccountDeactivationsOptions) {}

  /**
   * Deactivate an account: no password, no devices, no rooms; the user ID stays taken forever.
   * Resolves once the follow-up work is done; a failed hook leaves it pending, logged.
   */
  async deactivate(userId: string, options: { erase?: boolean } = {}): Promise<void> {
    const account = await this.options.activeAccount(userId);
    delete account.passwordHash;
    account.deactivated = true;
    if (options.erase) account.erase = true;
    await this.options.store.markDeactivated(account);
    await this.finish(userId);
  }

  /**
   * Finish deactivations a dead process or a failed hook left pending (a leased background job
   * runs it; see domain/jobs/background_jobs.ts). Returns how many were finished; stops between
   * accounts once `signal` aborts.
   */
  async resume(signal?: AbortSignal): Promise<number> {
    let finished = 0;
    for (const userId of await this.options.store.pendingDeactivations()) {
      if (signal?.aborted) break;
      if (await this.finish(userId)) finished++;
    }
    return finished;
  }

  /** Log out every device and run every hook; true when all of it succeeded. */
  finish(userId: string): Promise<boolean> {
    let running = this.finishing.get(userId);
    if (!running) {
      running = this.#run(userId).finally(() => this.finishing.delete(userId));
      this.finishing.set(userId, running);
    }
    return running;
  }

  async #run(userId: string): Promise<boolean> {
    const erase = (await this.options.store.getAccount(userId))?.erase === true;
    let ok = true;
    try {
      await this.options.logoutAll(userId);
    } catch (error) {
      ok = false;
      console.error("deactivation: logging out failed", userId, error);
    }
    // Every hook runs even when one fails; each is idempotent, so a later pass may redo them.
    for (const hook of this.hooks) {
      try {
        await hook(userId, { erase });
      } catch (error) {
        ok = false;
        console.error("account deactivation hook failed", userId, error);
      }
    }
    if (ok) await this.options.store.finishDeactivation(userId);
    return ok;
  }
}
