// Applies SCIM PATCH requests and filters with scimmy, an independent
// implementation of RFC 7644, for the differential tests in
// internal/events/scim: reads [{resource, ops}] or [{filter, resources}] on
// stdin, writes [{result} | {matches: [indexes]} | {error: {status, scimType}}].
import SCIMMY from "scimmy";

SCIMMY.Resources.declare(SCIMMY.Resources.User);
SCIMMY.Resources.User.extend(SCIMMY.Schemas.EnterpriseUser, false);

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const c of JSON.parse(input)) {
  try {
    if (c.filter !== undefined) {
      const hits = new SCIMMY.Types.Filter(c.filter).match(c.resources);
      out.push({matches: hits.map((r) => c.resources.indexOf(r))});
      continue;
    }
    const msg = new SCIMMY.Messages.PatchOp({schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], Operations: c.ops});
    const res = await msg.apply(new SCIMMY.Schemas.User(c.resource));
    out.push({result: JSON.parse(JSON.stringify(res))});
  } catch (e) {
    out.push({error: {status: Number(e.status) || 0, scimType: e.scimType || "", message: String(e.message)}});
  }
}
process.stdout.write(JSON.stringify(out));
