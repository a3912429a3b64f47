/** The services the HTTP layer is built from; main.ts wires the real ones, tests their own. */
import type { Config } from "../domain/config.ts";
import type { ServerKeyring } from "../domain/server_keys.ts";

/** What every route module may depend on. */
export interface AppDeps {
  config: Config;
  keyring: ServerKeyring;
  /** Resolves when storage answers; rejects (or returns false) when it does not. */
  storageHealthy(): Promise<boolean>;
  /** Clock, injectable for tests. */
  now?: () => number;
}
