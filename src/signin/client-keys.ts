// Sign-in stage: the keys of `private_key_jwt` client authentication, checked at start by the
// config (src/config/client-keys.ts), imported for signing (the first key) and published, public
// parts only, at /oauth2/client-jwks.json for the IdP to fetch (the client's registered `jwks_uri`).
// Asynchronous (jose), once per config: at the IdP client's discovery and the endpoint's first request.
import { calculateJwkThumbprint, importJWK, type CryptoKey as JoseKey, type JWK } from 'jose';
import { publicJwk, type ClientKey, type ClientKeyAlg } from '../config/client-keys.js';

export type { ClientKey } from '../config/client-keys.js';

export interface ClientKeySet {
  /** The first key of the file, imported for signing (non-extractable), with its kid. */
  signing: { key: JoseKey; kid: string; alg: ClientKeyAlg; cert?: ClientKey['cert'] };
  /** /oauth2/client-jwks.json: every key's public part, in file order. */
  jwks: { keys: JWK[] };
}

const loaded = new WeakMap<readonly ClientKey[], Promise<ClientKeySet>>();

/** The keys imported and their kids derived, once per (frozen) config key list. */
export function loadClientKeys(keys: readonly ClientKey[]): Promise<ClientKeySet> {
  let p = loaded.get(keys);
  if (!p) {
    p = (async () => {
      const published: JWK[] = [];
      for (const k of keys) {
        const kid = k.kid ?? await calculateJwkThumbprint(publicJwk(k, ''), 'sha256');
        published.push(publicJwk(k, kid));
      }
      const first = keys[0];
      if (!first) throw new Error('private_key_jwt: no client keys');
      const key = await importJWK(first.jwk, first.alg, { extractable: false }) as JoseKey;
      return { signing: { key, kid: published[0]!.kid!, alg: first.alg, cert: first.cert }, jwks: { keys: published } };
    })();
    loaded.set(keys, p);
  }
  return p;
}
