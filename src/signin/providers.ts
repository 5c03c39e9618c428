// Sign-in stage: the configured OpenID Providers (config `oidc`, one or several), each with its own
// IdP client (idp.ts), introspection cache and token-exchange cache. The ONE way src/ reaches a
// provider: `rt.providers.get(id)` for a session's or a transaction's provider, `byIssuer(iss)` for a
// token that names its issuer (bearer JWTs, logout tokens) — matched against the configured issuers
// only, exactly — and `all` for readiness, metrics and shutdown.
import type { FastifyBaseLogger } from 'fastify';
import type { ProviderConfig } from '../config/index.js';
import type { Metrics } from '../metrics.js';
import { IdentityProvider, type IdpHooks, type IdpSettings } from './idp.js';
import { Introspector } from './introspection.js';
import { TokenExchanger } from './exchange.js';

/** The IdP client's settings for one provider: its config and the one callback URL (publicUrl + /oauth2/callback), shared by every provider. */
export function idpSettingsOf(p: ProviderConfig, publicUrl: string): IdpSettings {
  return { ...p, redirectUri: `${publicUrl}/oauth2/callback` };
}

/** One configured provider and the clients that talk to it. */
export class Provider {
  readonly id: string;
  readonly idp: IdentityProvider;
  /** RFC 7662 introspection of API clients' tokens issued by this provider, with its cache. */
  readonly introspector: Introspector;
  /** RFC 8693 token exchange at this provider for its sessions' tokens, with its cache. */
  readonly exchanger: TokenExchanger;

  constructor(readonly config: ProviderConfig, publicUrl: string, metrics: Metrics, log: FastifyBaseLogger, now: () => number, hooks: Pick<IdpHooks, 'keyCacheMaxAgeMs'> = {}) {
    this.id = config.id;
    const provider = config.id;
    this.idp = new IdentityProvider(idpSettingsOf(config, publicUrl), {
      ...hooks,
      now,
      log: log.child({ provider }),
      observe: (endpoint, seconds, ok) => metrics.idpDuration.observe({ endpoint, outcome: ok ? 'ok' : 'error', provider }, seconds),
      countGroupOverage: (result) => metrics.groupOverage.inc({ result }),
    });
    // Always there, so a hot reload can add a route that uses it; it costs nothing until a token comes.
    this.introspector = new Introspector(
      { issuer: config.issuer, audiences: config.bearerAudiences, clockToleranceSec: config.clockToleranceSec, ...config.introspection },
      {
        introspect: (token) => this.idp.introspect(token),
        now,
        observe: (result) => metrics.introspections.inc({ result }),
        cache: (result) => metrics.introspectionCache.inc({ result }),
      },
    );
    this.exchanger = new TokenExchanger({
      exchange: (token, audience, scope) => this.idp.exchange(token, audience, scope),
      now,
      count: (result) => metrics.tokenExchanges.inc({ result }),
    });
  }
}

export class Providers {
  readonly all: readonly Provider[];
  /** The first configured provider: sessions, transactions and revocations written before providers had ids belong to it. */
  readonly first: Provider;
  private readonly byId: ReadonlyMap<string, Provider>;
  private readonly issuers: ReadonlyMap<string, Provider>;

  constructor(configs: readonly ProviderConfig[], publicUrl: string, metrics: Metrics, log: FastifyBaseLogger, now: () => number) {
    this.all = configs.map((c) => new Provider(c, publicUrl, metrics, log, now));
    this.first = this.all[0]!;
    this.byId = new Map(this.all.map((p) => [p.id, p]));
    // The configured issuer, exactly (discovery refuses a document whose `issuer` differs from it).
    this.issuers = new Map(this.all.map((p) => [p.config.issuer, p]));
  }

  /** The provider with this id, or undefined (an id from a cookie or a query is checked here). */
  get(id: string): Provider | undefined { return this.byId.get(id); }

  /** The provider whose configured issuer is exactly `iss` (never a prefix, never a discovered alias). */
  byIssuer(iss: unknown): Provider | undefined { return typeof iss === 'string' ? this.issuers.get(iss) : undefined; }

  /**
   * Ready when EVERY provider is discovered: a replica that could sign in with only some of them
   * would send the others' users to an error page, and Kubernetes would route them there (a
   * provider that stays down keeps every replica unready — /readyz says which one).
   */
  get ready(): boolean {
    for (const p of this.all) if (!p.idp.ready) return false;
    return true;
  }

  /** Starts (or nudges) discovery of every provider not discovered yet. */
  start(): void { for (const p of this.all) if (!p.idp.ready) void p.idp.start(); }

  /** Resolves when every provider is discovered, or rejects after `ms`. */
  async waitReady(ms: number): Promise<void> {
    await Promise.all(this.all.map((p) => p.idp.waitReady(ms)));
  }

  close(): void { for (const p of this.all) p.idp.close(); }
}
