/**
 * Reading the file name out of a `Content-Disposition` header (RFC 6266) that another server
 * sent with its media: the `filename*` form (RFC 8187, UTF-8 or ISO-8859-1) wins over the plain
 * `filename`, as the RFC asks. The writer is routes/media/media_headers.ts.
 */
import { splitHeaderParameters } from "./header_parameters.ts";

/** Longest file name kept: longer ones are dropped, not cut (a cut name could mislead). */
const MAX_FILE_NAME_LENGTH = 255;

/** Decode an RFC 8187 ext-value (`charset'lang'pct-encoded`); undefined when malformed. */
function extValue(value: string): string | undefined {
  const match = /^([A-Za-z0-9!#$%&+\-^_`{}~]+)'[A-Za-z0-9-]*'(.*)$/.exec(value);
  if (match === null) return undefined;
  const charset = match[1].toLowerCase();
  const bytes: number[] = [];
  const text = match[2];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "%") {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      const code = text.charCodeAt(i);
      if (code > 0x7e || code < 0x21) return undefined;
      bytes.push(code);
    }
  }
  try {
    if (charset === "utf-8") {
      return new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes));
    }
    if (charset === "iso-8859-1") return String.fromCharCode(...bytes);
  } catch {
    return undefined;
  }
  return undefined;
}

/**
 * The file name a Content-Disposition value gives, or undefined (none, malformed, too long, or
 * holding control characters or path separators, which a name in an mxc download never needs).
 */
export function dispositionFileName(value: string | null | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  let plain: string | undefined;
  let extended: string | undefined;
  for (const param of splitHeaderParameters(value).slice(1)) {
    const eq = param.indexOf("=");
    if (eq === -1) continue;
    const name = param.slice(0, eq).trim().toLowerCase();
    let raw = param.slice(eq + 1).trim();
    if (name === "filename*") {
      extended = extValue(raw);
    } else if (name === "filename") {
      if (raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2) {
        raw = raw.slice(1, -1).replace(/\\(.)/g, "$1");
      }
      plain = raw;
    }
  }
  const chosen = extended ?? plain;
  if (chosen === undefined || chosen === "" || chosen.length > MAX_FILE_NAME_LENGTH) {
    return undefined;
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f/\\]/.test(chosen)) return undefined;
  return chosen;
}
