/**
 * `deno task signing-key`: print a new Ed25519 signing key seed (32 random bytes, unpadded
 * base64) for TESSERA_SIGNING_KEY, which every instance of a deployment must share.
 *
 * `deno task signing-key --stored [kv-path]`: print the seed a server generated and kept in KV
 * (when it started without TESSERA_SIGNING_KEY), to move it into TESSERA_SIGNING_KEY without
 * changing the server's key. The KV path defaults to TESSERA_KV_PATH, then to the server's
 * default file; a Deno Deploy database is read from outside by its KV Connect URL, with
 * DENO_KV_ACCESS_TOKEN set. Nothing is written.
 */
import { CONFIG_DEFAULTS } from "../domain/config.ts";
import { isKvConnectUrl } from "../domain/config_placement.ts";
import { encodeBase64Unpadded } from "../domain/protocol/base64.ts";
import { generateSigningSeed } from "../domain/protocol/signing.ts";
import { openKv } from "../kv/open_kv.ts";
import { readStoredSigningSeed } from "../kv/server_signing_seed.ts";

function usage(message: string): never {
  console.error(`${message}\nusage: deno task signing-key [--stored [kv-path]]`);
  Deno.exit(2);
}

const [first, path, ...rest] = Deno.args;
if (first === undefined) {
  console.log(encodeBase64Unpadded(generateSigningSeed()));
} else if (first === "--stored" && rest.length === 0) {
  const where = path ?? (Deno.env.get("TESSERA_KV_PATH") || CONFIG_DEFAULTS.kvPath);
  // Opening a file that is not there would create an empty database: say so instead.
  if (!isKvConnectUrl(where) && !(await Deno.stat(where).then(() => true, () => false))) {
    console.error(`no KV file at ${where}`);
    Deno.exit(1);
  }
  const kv = await openKv(where);
  try {
    const seed = await readStoredSigningSeed(kv);
    if (seed === undefined) {
      console.error("no signing seed is stored there (the server never started without one)");
      Deno.exit(1);
    }
    console.log(encodeBase64Unpadded(seed));
  } finally {
    kv.close();
  }
} else {
  usage(`unexpected arguments: ${Deno.args.join(" ")}`);
}
