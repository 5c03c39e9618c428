// Development IdP: the slice of oidc-provider 8's API we use (the package ships no types).
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface InteractionDetails {
    uid: string;
    prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
    params: Record<string, unknown> & { client_id?: string; scope?: string };
    session?: { accountId: string; uid: string; cookie: string };
    grantId?: string;
    returnTo: string;
  }

  export interface InteractionResult {
    login?: { accountId: string; remember?: boolean };
    consent?: { grantId?: string };
    error?: string;
    error_description?: string;
  }

  export interface Grant {
    readonly jti: string;
    accountId: string;
    clientId: string;
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(ttl?: number): Promise<string>;
  }

  export interface GrantModel {
    new (properties: { accountId: string; clientId: string }): Grant;
    find(id: string): Promise<Grant | undefined>;
  }

  export interface ClientModel {
    validate(metadata: Record<string, unknown>): Promise<void>;
    find(id: string): Promise<unknown>;
  }

  /** An access token as the provider stores it (the fields the tests read). */
  export interface AccessToken {
    readonly jti: string;
    accountId: string;
    clientId: string;
    grantId?: string;
    scope?: string;
    aud?: string;
    gty?: string;
    readonly isExpired: boolean;
    readonly expiration: number;
    setAudience(audience: string | string[]): void;
    save(): Promise<string>;
    destroy(): Promise<void>;
  }

  export interface AccessTokenModel {
    new (properties: Record<string, unknown>): AccessToken;
    find(value: string): Promise<AccessToken | undefined>;
  }

  export default class Provider {
    readonly AccessToken: AccessTokenModel;
    /** A grant type of the token endpoint: handler(ctx, next), its extra parameters. */
    registerGrantType(name: string, handler: (ctx: any, next: () => Promise<void>) => Promise<void>, params?: string | string[]): void;
    constructor(issuer: string, configuration?: Record<string, unknown>);
    readonly issuer: string;
    readonly Grant: GrantModel;
    readonly Client: ClientModel;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
    interactionResult(req: IncomingMessage, res: ServerResponse, result: InteractionResult, options?: { mergeWithLastSubmission?: boolean }): Promise<string>;
    interactionFinished(req: IncomingMessage, res: ServerResponse, result: InteractionResult, options?: { mergeWithLastSubmission?: boolean }): Promise<void>;
    on(event: string, listener: (...args: any[]) => void): this;
    /** Koa middleware, run before oidc-provider's own. */
    use(middleware: (ctx: any, next: () => Promise<void>) => Promise<void>): void;
  }

  export const errors: {
    SessionNotFound: new (...args: any[]) => Error;
    [name: string]: new (...args: any[]) => Error;
  };
}
