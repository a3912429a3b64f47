/** What the well-known documents tell clients and peers about where we are. */
import type { Config } from "./config.ts";
import { parseServerName } from "./protocol/identifiers.ts";

/** Base URL clients should use: the configured public URL, else one derived from the server name. */
export function clientBaseUrl(config: Config): string {
  if (config.publicBaseUrl) return config.publicBaseUrl.replace(/\/+$/, "");
  const scheme = config.tls ? "https" : "http";
  return `${scheme}://${config.serverName}`;
}

/**
 * The `m.server` delegation target: host and port where federation is served. With a public
 * base URL that is its host (port 443 unless given); otherwise the server name itself, given an
 * explicit port because peers would otherwise dial 8448.
 */
export function delegatedServer(config: Config): string {
  if (config.publicBaseUrl) {
    const url = new URL(config.publicBaseUrl);
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    return `${url.hostname}:${port}`;
  }
  const parsed = parseServerName(config.serverName);
  if (parsed.ok && parsed.value.port === undefined) return `${config.serverName}:${config.port}`;
  return config.serverName;
}
