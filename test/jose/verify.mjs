// Reads {"jwks": URL, "tokens": [{"name", "token", "typ", "iss", "aud", "alg"?}]}
// on stdin and verifies each token with jose's jwtVerify against the remote
// JWKS, requiring the typ, issuer and audience (and the algorithm, when
// given: as a relying party that accepts only that one). Prints one line per token
// and exits non-zero if any fails.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const input = JSON.parse(await new Promise((resolve) => {
  let s = '';
  process.stdin.on('data', (d) => { s += d; });
  process.stdin.on('end', () => resolve(s));
}));
const jwks = createRemoteJWKSet(new URL(input.jwks));
let failed = 0;
for (const t of input.tokens) {
  try {
    const { protectedHeader } = await jwtVerify(t.token, jwks, { typ: t.typ, issuer: t.iss, audience: t.aud, algorithms: t.alg ? [t.alg] : undefined });
    console.log(`ok ${t.name} ${protectedHeader.alg} ${protectedHeader.typ}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${t.name}: ${e.code || ''} ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
