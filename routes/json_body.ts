/**
 * Reading request bodies and query strings at the edge: size limits first, then JSON parsing,
 * then a zod schema. Every failure is a Matrix error with the right status, never a 500.
 */
import type { Context } from "hono";
import type { z } from "zod";
import { MatrixError, tooLarge } from "../domain/errors.ts";
import { readStreamUpTo } from "../domain/bytes.ts";

/** Largest request body we read by default; media uploads set their own limit. */
export const MAX_JSON_BODY_BYTES = 1_048_576;

/** Deepest nesting of arrays and objects a body may have (the body itself is level 1). */
export const MAX_JSON_DEPTH = 128;

/** Options for `readJsonBody`. */
export interface ReadJsonOptions {
  maxBytes?: number;
  /** Treat an empty body as `{}` (e.g. POST /logout, POST /join). */
  emptyAsObject?: boolean;
}

/** Read, size-check, parse and validate a JSON body. */
export async function readJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
  options: ReadJsonOptions = {},
): Promise<z.infer<S>> {
  const bytes = await readBodyBytes(c, options.maxBytes ?? MAX_JSON_BODY_BYTES);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new MatrixError("M_NOT_JSON", 400, "Request body is not UTF-8");
  }
  let data: unknown;
  if (text.trim() === "" && options.emptyAsObject) {
    data = {};
  } else {
    try {
      data = JSON.parse(text);
    } catch {
      throw new MatrixError("M_NOT_JSON", 400, "Request body is not valid JSON");
    }
    // After parsing (so malformed JSON stays M_NOT_JSON) and before anything recursive (zod,
    // canonical JSON, hashing) walks it: 2,000 levels overflowed the stack in validation.
    if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
      throw new MatrixError(
        "M_BAD_JSON",
        400,
        `Request body is nested more than ${MAX_JSON_DEPTH} levels deep`,
      );
    }
  }
  return validate(schema, data, "body");
}

/**
 * The body's bytes, read only up to `maxBytes`: a declared Content-Length over the limit is
 * refused unread, and a chunked body (no length) is read chunk by chunk and cancelled the moment
 * it passes the limit, so an oversize upload never sits in memory. Every route reads its body
 * here (JSON through `readJsonBody`, forms through `readBodyBytes` itself); the bytes are cached on
 * the request so a second read sees the same body. Over the limit: 413 M_TOO_LARGE.
 */
export async function readBodyBytes(c: Context, maxBytes: number): Promise<Uint8Array> {
  const refuse = () => tooLarge(`Request body is over ${maxBytes} bytes`);
  const declared = c.req.header("content-length");
  if (declared !== undefined && Number(declared) > maxBytes) throw refuse();
  const cached = c.req.bodyCache.arrayBuffer;
  if (cached) {
    const bytes = new Uint8Array(await cached);
    if (bytes.byteLength > maxBytes) throw refuse();
    return bytes;
  }
  const body = c.req.raw.body;
  if (body === null) return new Uint8Array(0);
  // Cancelled at the limit: the server stops receiving, the rest is never buffered.
  const bytes = await readStreamUpTo(body, maxBytes);
  if (bytes === null) throw refuse();
  // Hono keeps body promises here (typed as bodies), which its own readers reuse.
  (c.req.bodyCache as { arrayBuffer?: Promise<ArrayBuffer> }).arrayBuffer = Promise.resolve(
    bytes.buffer,
  );
  return bytes;
}

/**
 * Whether valid JSON `text` nests arrays and objects deeper than `max`, found by one scan that
 * skips strings: no recursion, so no depth can overflow the stack here.
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c) i++; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) {
      inString = true;
    } else if (ch === 0x7b || ch === 0x5b) {
      if (++depth > max) return true;
    } else if (ch === 0x7d || ch === 0x5d) {
      depth--;
    }
  }
  return false;
}

/** Validate query parameters (unknown ones are ignored, as the spec's compatibility asks). */
export function readQuery<S extends z.ZodType>(c: Context, schema: S): z.infer<S> {
  return validate(schema, c.req.query(), "query", "M_INVALID_PARAM");
}

/**
 * Validate `data` against `schema`. A missing required field is M_MISSING_PARAM; anything else is
 * `errcode` (M_BAD_JSON for bodies), with the path of the first problem in the message.
 */
export function validate<S extends z.ZodType>(
  schema: S,
  data: unknown,
  where: string,
  errcode = "M_BAD_JSON",
): z.infer<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = issue.path.map(String).join(".");
  const missing = issue.code === "invalid_type" && valueAt(data, issue.path) === undefined &&
    issue.path.length > 0;
  const code = missing ? "M_MISSING_PARAM" : errcode;
  const text = missing
    ? `Missing ${where} parameter '${path}'`
    : `Invalid ${where}${path ? ` at '${path}'` : ""}: ${issue.message}`;
  throw new MatrixError(code, 400, text);
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let value = data;
  for (const key of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}
