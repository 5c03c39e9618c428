// Session stage: how an IdP's name for a user or an IdP session (`sub`, `sid`) is keyed once there
// can be several providers. Its own module because the revocation list and the Redis store's
// index both key by it (neither imports the other for it).

/**
 * The key of an IdP name (`sid`, `sub`) of one provider, in the revocation list and the Redis session
 * index: `sub:alice` for the first provider — the form written before there were several, so entries
 * already stored, and replicas not yet upgraded, mean what they meant — and `sub@partners:alice`
 * for the others (provider ids hold no `:` or `@`, so the two forms never meet).
 */
export function idpNameKey(kind: 'sid' | 'sub', value: string, provider: string | undefined, first: string): string {
  return provider === undefined || provider === first ? `${kind}:${value}` : `${kind}@${provider}:${value}`;
}
