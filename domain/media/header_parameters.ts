/**
 * Splitting a header value with parameters (`type; a=b; c="d;e"`), shared by the multipart
 * boundary reader and the Content-Disposition reader so both treat quoting the same way.
 */

/** Split a header value at semicolons outside quoted strings (backslash escapes kept). */
export function splitHeaderParameters(value: string): string[] {
  const out: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted && ch === "\\" && i + 1 < value.length) {
      current += ch + value[++i];
      continue;
    }
    if (ch === '"') quoted = !quoted;
    if (ch === ";" && !quoted) {
      out.push(current);
      current = "";
    } else {
      current += ch;
    }
  }
  out.push(current);
  return out;
}
