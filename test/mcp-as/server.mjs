// The MCP TypeScript SDK's own authorization server (mcpAuthRouter with the
// SDK's demo in-memory provider, plus token revocation as a real deployment
// would add), and an MCP endpoint guarded by the SDK's bearer middleware, on
// one loopback port. Prints "listening <base URL>" when ready.
import express from 'express';
import { mcpAuthRouter, getOAuthProtectedResourceMetadataUrl } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { DemoInMemoryAuthProvider } from '@modelcontextprotocol/sdk/examples/server/demoInMemoryOAuthProvider.js';

class Provider extends DemoInMemoryAuthProvider {
  // The demo keeps tokens in a map; revoking deletes from it.
  async revokeToken(_client, request) {
    this.tokens?.delete?.(request.token);
  }
}

const app = express();
const server = app.listen(0, '127.0.0.1', () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider();
  const mcpUrl = new URL(`${base}/mcp`);
  app.use(mcpAuthRouter({ provider, issuerUrl: new URL(base), resourceServerUrl: mcpUrl, revocationOptions: { rateLimit: false } }));
  app.post('/mcp', requireBearerAuth({ verifier: provider, resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(mcpUrl) }), (_req, res) => res.json({}));
  app.get('/mcp', requireBearerAuth({ verifier: provider, resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(mcpUrl) }), (_req, res) => res.json({}));
  console.log(`listening ${base}`);
});
process.stdin.on('end', () => server.close(() => process.exit(0)));
process.stdin.resume();
