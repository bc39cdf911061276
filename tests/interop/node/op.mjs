// A real OpenID Provider (panva's oidc-provider) for tests/interop, on 127.0.0.1 over TLS.
//
// Usage: node op.mjs CONFIG.json. The config names the port, the TLS certificate and key (made by
// the test with its own CA), the signing keys to generate ({kid, alg} each: a fresh key per start,
// so a restart with other kids is a key rotation), the clients and the resource servers (each with
// its JWT access token signing alg, audience, scope and lifetime). Prints one line `READY <issuer>`
// on stdout once listening; logs nothing about tokens or keys.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { errors } from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));

async function privateJwk({ kid, alg }) {
  const opts = { extractable: true };
  if (alg.startsWith('RS') || alg.startsWith('PS')) opts.modulusLength = 2048;
  if (alg === 'EdDSA') opts.crv = 'Ed25519';
  const { privateKey } = await generateKeyPair(alg, opts);
  return { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
}

const keys = await Promise.all(cfg.keys.map(privateJwk));
const resources = new Map(Object.entries(cfg.resources));

const provider = new Provider(cfg.issuer, {
  jwks: { keys },
  clients: cfg.clients,
  cookies: { keys: ['interop-cookie-key-not-a-secret'] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub }),
  }),
  claims: { openid: ['sub'] },
  scopes: ['openid', 'orders:read'],
  enabledJWA: {
    idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
  },
  pkce: { required: () => false },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // The authorization-code flow asks for an id_token only; no access token resource then.
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        const rs = resources.get(resourceIndicator);
        if (!rs) throw new errors.InvalidTarget();
        return {
          scope: rs.scope,
          audience: rs.audience ?? resourceIndicator,
          accessTokenTTL: rs.ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: rs.alg } },
        };
      },
    },
  },
  ttl: { IdToken: cfg.id_token_ttl ?? 300 },
});

const server = https.createServer(
  { cert: readFileSync(cfg.tls_cert), key: readFileSync(cfg.tls_key) },
  provider.callback(),
);
server.listen(cfg.port, '127.0.0.1', () => {
  process.stdout.write(`READY ${cfg.issuer}\n`);
});
process.on('SIGTERM', () => {
  // Keep-alive connections (mesh-authz's JWKS client) would hold close() open.
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
