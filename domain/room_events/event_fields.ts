/**
 * A sync filter's `event_fields`: the last step of the read pipeline, picking the listed paths
 * out of each formatted event.
 */
import type { JsonObject } from "../protocol/json.ts";

/**
 * Keep only the `event_fields` paths: dot-separated, `\.` for a literal dot. A path through a
 * non-object is skipped.
 */
export function pickFields(event: JsonObject, fields: readonly string[]): JsonObject {
  const out: JsonObject = {};
  for (const field of fields) {
    const path = splitPath(field);
    let from: JsonObject = event;
    let to: JsonObject = out;
    for (let i = 0; i < path.length; i++) {
      const value = from[path[i]];
      if (value === undefined) break;
      if (i === path.length - 1) {
        to[path[i]] = value;
        break;
      }
      if (value === null || typeof value !== "object" || Array.isArray(value)) break;
      from = value;
      const next = to[path[i]];
      to = (next !== null && typeof next === "object" && !Array.isArray(next))
        ? next
        : (to[path[i]] = {});
    }
  }
  return out;
}

function splitPath(field: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < field.length; i++) {
    if (field[i] === "\\" && field[i + 1] === ".") {
      current += ".";
      i++;
    } else if (field[i] === ".") {
      parts.push(current);
      current = "";
    } else current += field[i];
  }
  parts.push(current);
  return parts;
}
