/**
 * `deno task reports [kv-path] [--after REPORT_ID] [--limit N]`: print the content reports users
 * filed (`/rooms/{roomId}/report`, `/rooms/{roomId}/report/{eventId}`, `/users/{userId}/report`),
 * oldest first, one JSON object per line. The KV path defaults to TESSERA_KV_PATH, then to the
 * server's default file. On Deno Deploy, read them with the same store from a deployed script.
 */
import { CONFIG_DEFAULTS } from "../domain/config.ts";
import { KvModerationStore } from "../kv/moderation_store.ts";

function usage(message: string): never {
  console.error(`${message}\nusage: deno task reports [kv-path] [--after REPORT_ID] [--limit N]`);
  Deno.exit(2);
}

const args = [...Deno.args];
let path: string | undefined;
let after: string | undefined;
let limit = 100;
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === "--after") after = args[++i] ?? usage("--after needs a report ID");
  else if (arg === "--limit") limit = Number(args[++i] ?? usage("--limit needs a number"));
  else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
  else path = arg;
}
if (!Number.isInteger(limit) || limit < 1) usage("--limit needs a whole number above 0");
path ??= Deno.env.get("TESSERA_KV_PATH") || CONFIG_DEFAULTS.kvPath;

const kv = await Deno.openKv(path);
try {
  for (const report of await new KvModerationStore(kv).listReports(after, limit)) {
    console.log(JSON.stringify(report));
  }
} finally {
  kv.close();
}
