// Keys, JWKS and tokens made by panva's jose for tests/interop (see producers.py).
//
// Reads on stdin {alg: {foreign_alg, specs: [{case, role, header, claims}]}} and prints
// {alg: {jwks, jwks_kidshare, tokens: {case: token}}}. Every key is generated, exported and used
// by jose: JWKs from exportJWK, tokens from SignJWT / UnsecuredJWT.
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

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const plan = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const out = {};
for (const [alg, { foreign_alg: foreignAlg, specs }] of Object.entries(plan)) {
  const keys = {
    signer: await generate(alg),
    other: await generate(alg),
    forger: await generate(alg),
    enc: await generate(alg),
  };
  const foreign = await generate(foreignAlg);
  const tokens = {};
  for (const spec of specs) tokens[spec.case] = await sign(spec, alg, keys);
  out[alg] = {
    jwks: {
      keys: [
        await publicJwk(keys.other, KID.other, alg),
        await publicJwk(keys.signer, KID.signer, alg),
        await publicJwk(keys.enc, KID.enc, alg, 'enc'),
      ],
    },
    jwks_kidshare: {
      keys: [
        await publicJwk(foreign, KID.shared, foreignAlg),
        await publicJwk(keys.signer, KID.shared, alg),
      ],
    },
    tokens,
  };
}
process.stdout.write(JSON.stringify(out));
