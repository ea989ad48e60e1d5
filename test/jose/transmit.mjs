// An SSF transmitter's signing side, with an independent JOSE library: reads
// {"kid", "sets": [claims, …]} on stdin, makes an RS256 key pair (2048 bits,
// as the SSF interoperability profile asks), signs each claims object as a
// SET (typ secevent+jwt, or input.typ: a Global Token Revocation request is
// signed the same way) and prints {"jwks": {…public key…}, "sets": [compact, …]}.
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

const input = JSON.parse(await new Promise((resolve) => {
  let s = '';
  process.stdin.on('data', (d) => { s += d; });
  process.stdin.on('end', () => resolve(s));
}));
const { publicKey, privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
const jwk = { ...(await exportJWK(publicKey)), kid: input.kid, alg: 'RS256', use: 'sig' };
const sets = [];
for (const claims of input.sets) {
  sets.push(await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: input.typ || 'secevent+jwt', kid: input.kid }).sign(privateKey));
}
console.log(JSON.stringify({ jwks: { keys: [jwk] }, sets }));
