// Forward stage, both directions: the headers that describe one connection only (RFC 9110 §7.6.1)
// and stay on their own hop — on requests to the upstream and on responses back to the client.

/** Hop-by-hop headers: never relayed, in either direction. */
export const HOP_BY_HOP: readonly string[] = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings'];
const RESPONSE_DROPPED = new Set([...HOP_BY_HOP, 'host']);

/** Whether a response header from the upstream stays on its own hop; `listed`: the names in its Connection header. */
export function isHopByHopResponseHeader(lowerName: string, listed: readonly string[] | undefined): boolean {
  return RESPONSE_DROPPED.has(lowerName) || (listed !== undefined && listed.includes(lowerName));
}

/**
 * The names a Connection header lists, lower case; undefined when it names none beyond the fixed
 * hop-by-hop list (`keep-alive` / `close`, nearly every request and response, skip the parsing).
 */
export function connectionTokens(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined;
  return (Array.isArray(value) ? value.join(',') : value).toLowerCase().split(',').map((s) => s.trim()).filter(Boolean);
}
