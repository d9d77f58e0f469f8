import type { ContentDecoding } from "../core/origin/response-fields.ts";

/**
 * workerd's rule for its `fetch`: a body labelled exactly `gzip` or `br` arrives decoded;
 * anything else (`deflate`, `x-gzip`, `GZIP`, a list of codings) arrives as the origin sent
 * it. Measured on workerd 2026-04-26 (test/cloudflare/content-coding.test.ts keeps it true).
 *
 * @example
 * new Engine({ ...options, decodes: workerdDecoding });
 */
export const workerdDecoding: ContentDecoding = (contentEncoding) =>
  contentEncoding === "gzip" || contentEncoding === "br";
