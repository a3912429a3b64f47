/**
 * The safety headers every media body goes out with (downloads, thumbnails, federation parts):
 * a sandboxing Content-Security-Policy and nosniff, so an uploaded HTML or SVG file cannot run
 * script in the server's origin, and `Content-Disposition: inline` only for types a browser
 * renders harmlessly; everything else (SVG included) is an attachment.
 */

/** The policy Synapse serves media with: no script, no plugins but PDF, sandboxed. */
export const MEDIA_CSP = "sandbox; default-src 'none'; script-src 'none'; " +
  "plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/** Types served `inline` (Synapse's INLINE_CONTENT_TYPES); anything else is an attachment. */
export const INLINE_CONTENT_TYPES: ReadonlySet<string> = new Set([
  "text/css",
  "text/plain",
  "text/csv",
  "application/json",
  "application/ld+json",
  "image/jpeg",
  "image/gif",
  "image/png",
  "image/apng",
  "image/webp",
  "image/avif",
  "video/mp4",
  "video/webm",
  "video/ogg",
  "video/quicktime",
  "audio/mp4",
  "audio/webm",
  "audio/aac",
  "audio/mpeg",
  "audio/ogg",
  "audio/wave",
  "audio/wav",
  "audio/x-wav",
  "audio/x-pn-wav",
  "audio/flac",
  "audio/x-flac",
]);

/** Text types given `charset=UTF-8` when they name no charset (as Synapse does). */
const TEXT_CONTENT_TYPES: ReadonlySet<string> = new Set([
  "text/css",
  "text/csv",
  "text/html",
  "text/calendar",
  "text/plain",
  "text/javascript",
  "application/json",
  "application/ld+json",
  "application/rtf",
  "image/svg+xml",
  "text/xml",
]);

/** The bare `type/subtype` of a Content-Type, lower-cased. */
export function essence(contentType: string): string {
  return contentType.split(";")[0].trim().toLowerCase();
}

// RFC 2616 token characters: printable ASCII but separators.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The Content-Disposition for a body of `contentType` named `fileName` (RFC 6266): a plain
 * `filename=` when the name is a token, else the UTF-8 `filename*=` form.
 */
export function contentDisposition(contentType: string, fileName?: string): string {
  // A comma makes browsers read several types and use the last one ("image/png; a=b,text/html"
  // renders as HTML), whatever the essence before the first `;` says.
  const kind = INLINE_CONTENT_TYPES.has(essence(contentType)) && !contentType.includes(",")
    ? "inline"
    : "attachment";
  if (fileName === undefined || fileName === "") return kind;
  if (TOKEN.test(fileName)) return `${kind}; filename=${fileName}`;
  // encodeURIComponent leaves ! ' ( ) * unescaped; RFC 5987's attr-char excludes ' ( ) *.
  const encoded = encodeURIComponent(fileName).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `${kind}; filename*=utf-8''${encoded}`;
}

/** The Content-Type sent for stored media: text types get an explicit UTF-8 charset. */
export function servedContentType(contentType: string): string {
  // Remote servers choose types too: anything that is not one line of printable ASCII (which a
  // header could not carry) is served as opaque bytes.
  if (!/^[\x20-\x7e]{1,255}$/.test(contentType)) return "application/octet-stream";
  const type = essence(contentType);
  if (TEXT_CONTENT_TYPES.has(type) && !/;\s*charset=/i.test(contentType)) {
    return `${contentType}; charset=UTF-8`;
  }
  return contentType;
}

/**
 * Every header of a media body: type, disposition, length, the CSP sandbox, nosniff, CORP
 * cross-origin (clients on other origins embed it) and a day of caching.
 */
export function mediaHeaders(
  media: { contentType: string; fileName?: string; size?: number },
): Headers {
  const headers = new Headers({
    "Content-Type": servedContentType(media.contentType),
    "Content-Disposition": contentDisposition(media.contentType, media.fileName),
    "Content-Security-Policy": MEDIA_CSP,
    "X-Content-Security-Policy": "sandbox;",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "public, max-age=86400, s-maxage=86400",
    "X-Robots-Tag": "noindex, nofollow, noarchive, noimageindex",
  });
  if (media.size !== undefined) headers.set("Content-Length", String(media.size));
  return headers;
}
