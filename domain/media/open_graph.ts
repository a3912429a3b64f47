/**
 * OpenGraph from an HTML page, read with a real HTML parser (htmlparser2, streaming, forgiving
 * of broken markup) rather than regular expressions, which comments, scripts and attribute
 * quoting defeat. The page's own `og:*` meta tags win; where one is missing it is filled as
 * Synapse does: `og:title` from `<title>` (else the first heading), `og:description` from the
 * meta description (else the text of the first paragraphs), `og:image` from the largest sized
 * `<img>` (else the first `<img>`, else an icon link). Every value is bounded so a preview fits
 * one KV value.
 */
import { Parser } from "htmlparser2";

/**
 * A preview's OpenGraph properties: strings as pages give them, except the integers the spec
 * makes of an image's size and dimensions (`matrix:image:size`, `og:image:width`/`height`).
 */
export type OpenGraph = Record<string, string | number>;

/** At most this many `og:` properties are kept from one page. */
export const MAX_OG_PROPERTIES = 50;
/** Longest property value kept, in characters (descriptions are cut shorter). */
export const MAX_OG_VALUE_CHARS = 1_000;
/** Longest description, in characters (Synapse's summary length). */
export const MAX_DESCRIPTION_CHARS = 500;

// Text inside these never shows on the page.
const HIDDEN = new Set(["script", "style", "noscript", "template", "svg", "iframe"]);
const HEADINGS = new Set(["h1", "h2", "h3"]);

interface ImageCandidate {
  src: string;
  area: number;
}

/** Read the OpenGraph of `html`, resolving relative image and page URLs against `pageUrl`. */
export function parseOpenGraph(html: string, pageUrl: string): Record<string, string> {
  const og: Record<string, string> = {};
  let ogCount = 0;
  let title: string | null = null;
  let inTitle = false;
  let titleText = "";
  let heading: string | null = null;
  let headingDepth = 0;
  let headingText = "";
  let metaDescription: string | null = null;
  const sizedImages: ImageCandidate[] = [];
  let firstImage: string | null = null;
  let icon: string | null = null;
  let hiddenDepth = 0;
  let paragraphDepth = 0;
  let paragraphText = "";
  const paragraphs: string[] = [];
  let paragraphChars = 0;

  const parser = new Parser({
    onopentag(name, attrs) {
      if (HIDDEN.has(name)) hiddenDepth++;
      if (name === "meta") {
        const key = (attrs.property ?? attrs.name ?? "").trim();
        const content = attrs.content;
        if (content === undefined) return;
        // Some sites write og: tags with `name=` instead of `property=`; both count.
        if (key.toLowerCase().startsWith("og:") && key.length <= 100) {
          if (!(key in og) && ogCount < MAX_OG_PROPERTIES) {
            og[key] = clip(content, MAX_OG_VALUE_CHARS);
            ogCount++;
          }
        } else if (key.toLowerCase() === "description" && metaDescription === null) {
          metaDescription = content;
        }
      } else if (name === "title" && title === null) {
        inTitle = true;
        titleText = "";
      } else if (HEADINGS.has(name) && heading === null) {
        headingDepth++;
      } else if (name === "img" && attrs.src) {
        firstImage ??= attrs.src;
        const width = Number(attrs.width);
        const height = Number(attrs.height);
        // Synapse skips spacers and tracking pixels: only images over 10x10 compete on size.
        if (width > 10 && height > 10) sizedImages.push({ src: attrs.src, area: width * height });
      } else if (name === "link" && attrs.href && icon === null) {
        const rel = (attrs.rel ?? "").toLowerCase().split(/\s+/);
        if (rel.includes("icon")) icon = attrs.href;
      } else if (name === "p" && hiddenDepth === 0) {
        paragraphDepth++;
      }
    },
    ontext(text) {
      if (inTitle) titleText += text;
      if (headingDepth > 0) headingText += text;
      if (paragraphDepth > 0 && hiddenDepth === 0 && paragraphChars < MAX_DESCRIPTION_CHARS) {
        paragraphText += text;
      }
    },
    onclosetag(name) {
      if (HIDDEN.has(name) && hiddenDepth > 0) hiddenDepth--;
      if (name === "title" && inTitle) {
        inTitle = false;
        title = collapse(titleText);
      } else if (HEADINGS.has(name) && headingDepth > 0) {
        headingDepth--;
        if (headingDepth === 0 && heading === null) heading = collapse(headingText) || null;
      } else if (name === "p" && paragraphDepth > 0) {
        paragraphDepth--;
        if (paragraphDepth === 0) {
          const text = collapse(paragraphText);
          paragraphText = "";
          if (text !== "" && paragraphChars < MAX_DESCRIPTION_CHARS) {
            paragraphs.push(text);
            paragraphChars += text.length + 1;
          }
        }
      }
    },
  }, { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true });
  parser.write(html);
  parser.end();

  if (og["og:title"] === undefined) {
    const fallback = title || heading;
    if (fallback) og["og:title"] = clip(fallback, MAX_OG_VALUE_CHARS);
  }
  if (og["og:description"] === undefined) {
    const fallback = metaDescription !== null ? collapse(metaDescription) : paragraphs.join("\n");
    if (fallback) og["og:description"] = clip(fallback, MAX_DESCRIPTION_CHARS);
  }
  if (og["og:image"] === undefined) {
    const largest = sizedImages.sort((a, b) => b.area - a.area)[0]?.src;
    const image = largest ?? firstImage ?? icon;
    if (image) og["og:image"] = image;
  }
  for (const key of ["og:image", "og:image:url", "og:image:secure_url", "og:url"]) {
    if (og[key] === undefined) continue;
    const resolved = resolveUrl(og[key], pageUrl);
    if (resolved === null) delete og[key];
    else og[key] = resolved;
  }
  return og;
}

/**
 * The charset a page declares: the Content-Type header's, else a `<meta charset>` or
 * `<meta http-equiv=Content-Type>` in the first 1,024 bytes (as browsers sniff), else utf-8.
 */
export function pageCharset(contentType: string | null, body: Uint8Array): string {
  const fromHeader = contentType?.match(/charset\s*=\s*"?([A-Za-z0-9._:-]+)/i)?.[1];
  if (fromHeader && isKnownCharset(fromHeader)) return fromHeader.toLowerCase();
  const head = new TextDecoder("latin1").decode(body.subarray(0, 1024));
  const fromMeta = head.match(/<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9._:-]+)/i)?.[1];
  if (fromMeta && isKnownCharset(fromMeta)) return fromMeta.toLowerCase();
  return "utf-8";
}

/** Decode a page's bytes in the charset it declares (unknown charsets read as utf-8). */
export function decodePage(contentType: string | null, body: Uint8Array): string {
  return new TextDecoder(pageCharset(contentType, body)).decode(body);
}

function isKnownCharset(label: string): boolean {
  try {
    new TextDecoder(label);
    return true;
  } catch {
    return false;
  }
}

function collapse(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  // Cut at a word boundary where one is near, and say the text goes on.
  const cut = text.slice(0, max - 1);
  const space = cut.lastIndexOf(" ");
  return `${space > max * 0.8 ? cut.slice(0, space) : cut}…`;
}

/** An absolute http(s) URL for `ref` on the page, or null (data:, javascript:, garbage). */
function resolveUrl(ref: string, pageUrl: string): string | null {
  try {
    const url = new URL(ref.trim(), pageUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    return url.href.length > 2_000 ? null : url.href;
  } catch {
    return null;
  }
}
