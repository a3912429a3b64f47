/**
 * Where the process runs, against what it was configured with: Deno Deploy, a KV Connect URL,
 * a local file or `:memory:` each allow some settings and imply some defaults (the wake mode).
 * Apart from domain/config.ts, which parses the variables, because these rules are about the
 * platform rather than any one variable's syntax.
 */
import type { WakeMode } from "./ports/wake_source.ts";

/** Whether a KV path is a KV Connect URL (self-hosted denokv, a Deploy database from outside). */
export function isKvConnectUrl(path: string): boolean {
  return /^https?:\/\//i.test(path);
}

/**
 * The wake mode when TESSERA_WAKE is unset: kv.watch where it crosses isolates (Deno Deploy, a
 * KV Connect URL), nothing for `:memory:` (no other process can open it), a poll for a file.
 */
export function defaultWakeMode(kvPath: string | undefined, deploy: boolean | undefined): WakeMode {
  if (deploy || kvPath === undefined || isKvConnectUrl(kvPath)) return "watch";
  return kvPath === ":memory:" ? "local" : "poll";
}

/** The parsed variables the placement rules read. */
export interface PlacementVariables {
  readonly TESSERA_KV_PATH?: string;
  readonly TESSERA_TLS_CERT?: string;
  readonly TESSERA_TLS_KEY?: string;
  readonly TESSERA_SERVER_NAME?: string;
  readonly TESSERA_PUBLIC_BASEURL?: string;
}

/** A setting the platform does not allow, or one it requires that is missing. */
export interface PlacementProblem {
  variable: string;
  problem: string;
}

/**
 * Where the process runs against what it was given: on Deno Deploy every instance has its own
 * disk and Deploy terminates TLS; a KV Connect URL needs the access token Deno reads itself.
 * Checked after the schema (domain/config.ts), since it needs to know where the process runs
 * and a variable outside TESSERA_*.
 */
export function placementProblems(
  v: PlacementVariables,
  env: Record<string, string | undefined>,
  deploy: boolean,
): PlacementProblem[] {
  const problems: PlacementProblem[] = [];
  const kvPath = v.TESSERA_KV_PATH;
  if (deploy) {
    if (kvPath !== undefined) {
      problems.push({
        variable: "TESSERA_KV_PATH",
        problem: "leave it unset on Deno Deploy: the app's own KV database is opened then. " +
          "A file or :memory: would be a separate database in every instance, and Deploy " +
          "does not let an app set DENO_KV_ACCESS_TOKEN for a KV Connect URL",
      });
    }
    for (const name of ["TESSERA_TLS_CERT", "TESSERA_TLS_KEY"] as const) {
      if (v[name] !== undefined) {
        problems.push({ variable: name, problem: "unset it on Deno Deploy: Deploy serves HTTPS" });
      }
    }
    // The local defaults (localhost:8008; http:// and the listening port in the well-known
    // documents) would name a server nobody can reach: Deploy serves HTTPS on 443.
    if (v.TESSERA_SERVER_NAME === undefined) {
      problems.push({
        variable: "TESSERA_SERVER_NAME",
        problem: "required on Deno Deploy (the part after ':' in user IDs, e.g. example.org)",
      });
    }
    if (v.TESSERA_PUBLIC_BASEURL === undefined) {
      problems.push({
        variable: "TESSERA_PUBLIC_BASEURL",
        problem: "required on Deno Deploy: the https:// URL the app is served at",
      });
    } else if (!v.TESSERA_PUBLIC_BASEURL.startsWith("https://")) {
      problems.push({
        variable: "TESSERA_PUBLIC_BASEURL",
        problem: "expected an https:// URL on Deno Deploy, which serves HTTPS only",
      });
    }
  } else if (kvPath !== undefined && isKvConnectUrl(kvPath)) {
    const url = URL.canParse(kvPath) ? new URL(kvPath) : undefined;
    if (url === undefined || url.hostname === "" || url.username !== "" || url.password !== "") {
      problems.push({
        variable: "TESSERA_KV_PATH",
        problem: "expected a KV Connect URL like https://host/path, without credentials " +
          "(the token goes in DENO_KV_ACCESS_TOKEN)",
      });
    } else if ((env.DENO_KV_ACCESS_TOKEN ?? "") === "") {
      problems.push({
        variable: "DENO_KV_ACCESS_TOKEN",
        problem: "required when TESSERA_KV_PATH is a KV Connect URL (value not shown)",
      });
    }
  }
  return problems;
}
