// Keys, JWKS and tokens made by panva's jose for tests/interop (see producers.py).
//
// Reads the plan file named by its argument, {alg: {foreign_alg, specs: [{case, role, header,
// claims}]}}, and prints {alg: {jwks, jwks_kidshare, tokens: {case: token}}}. Every key is
// generated, exported and used by jose: JWKs from exportJWK, tokens from SignJWT / UnsecuredJWT.
import { readFileSync } from 'node:fs';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';

const KID = { signer: 'signer', other: 'other', enc: 'enc-key', shared: 'shared' };

async function generate(alg) {
  const opts = { extractable: true };
  if (alg.startsWith('RS') || alg.startsWith('PS')) opts.modulusLength = 2048;
  if (alg === 'EdDSA') opts.crv = 'Ed25519';
  return generateKeyPair(alg, opts);
}

async function publicJwk(pair, kid, alg, use = 'sig') {
  return { ...(await exportJWK(pair.publicKey)), kid, alg, use };
}

async function sign(spec, alg, keys) {
  const { role, header, claims } = spec;
  if (role === 'none') return new UnsecuredJWT(claims).encode();
  if (role === 'hs256') {
    const pem = await exportSPKI(keys.signer.publicKey);
    return new SignJWT(claims)
      .setProtectedHeader({ ...header, alg: 'HS256' })
      .sign(new TextEncoder().encode(pem));
  }
  const options = {};
  if (header.crit) options.crit = Object.fromEntries(header.crit.map((name) => [name, true]));
  return new SignJWT(claims).setProtectedHeader({ ...header, alg }).sign(keys[role].privateKey, options);
}

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));

async function make(alg, foreignAlg, specs) {
  const [signer, other, forger, enc, foreign] = await Promise.all(
    [alg, alg, alg, alg, foreignAlg].map(generate),
  );
  const keys = { signer, other, forger, enc };
  const tokens = {};
  for (const spec of specs) tokens[spec.case] = await sign(spec, alg, keys);
  return {
    jwks: {
      keys: [
        await publicJwk(other, KID.other, alg),
        await publicJwk(signer, KID.signer, alg),
        await publicJwk(enc, KID.enc, alg, 'enc'),
      ],
    },
    jwks_kidshare: {
      keys: [
        await publicJwk(foreign, KID.shared, foreignAlg),
        await publicJwk(signer, KID.shared, alg),
      ],
    },
    tokens,
  };
}

// Key generation runs on libuv's thread pool: every algorithm at once.
const entries = Object.entries(plan);
const made = await Promise.all(entries.map(([alg, p]) => make(alg, p.foreign_alg, p.specs)));
const out = Object.fromEntries(entries.map(([alg], i) => [alg, made[i]]));
process.stdout.write(JSON.stringify(out));
