// A local OpenID Connect provider for tests/oidc.rs: oidc-provider (panva) over HTTPS on
// an ephemeral port, one confidential client (the gateway's admin listener), and two
// users — olivia, a compliance officer, and mallory, an analyst. Its interaction takes
// the user from `POST /interaction/:uid/login?user=NAME`, so a test signs in without a form.
//
// usage: node provider.mjs CERT.pem KEY.pem REDIRECT_URI
// prints {"issuer": "https://127.0.0.1:PORT"} once it listens.
import crypto from "node:crypto";
import fs from "node:fs";
import https from "node:https";

import Provider from "oidc-provider";

const [certPath, keyPath, redirectUri] = process.argv.slice(2);
if (!redirectUri) {
  console.error("usage: node provider.mjs CERT.pem KEY.pem REDIRECT_URI");
  process.exit(2);
}

const CLIENT_ID = "bordergate-admin";
const CLIENT_SECRET = "test-client-secret-0123456789abcdef";

const users = {
  olivia: { name: "Olivia Officer", roles: ["compliance-officer", "staff"] },
  mallory: { name: "Mallory Analyst", roles: ["analyst"] },
};

const signing = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });

let handler = null;
let issuer = null;

const server = https.createServer(
  { cert: fs.readFileSync(certPath), key: fs.readFileSync(keyPath) },
  (req, res) => {
    const url = new URL(req.url, issuer);
    const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (m) {
      interaction(req, res, m[2] !== undefined, url).catch((e) => {
        res.statusCode = 400;
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ error: String(e && e.message ? e.message : e) }));
      });
      return;
    }
    handler(req, res);
  },
);

let provider = null;

async function interaction(req, res, login, url) {
  const details = await provider.interactionDetails(req, res);
  if (!login) {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ uid: details.uid, prompt: details.prompt.name }));
    return;
  }
  if (req.method !== "POST") throw new Error("POST to log in");
  const accountId = url.searchParams.get("user");
  if (!users[accountId]) throw new Error(`no user ${accountId}`);
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

server.listen(0, "127.0.0.1", () => {
  issuer = `https://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [redirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
        id_token_signed_response_alg: "ES256",
      },
    ],
    jwks: { keys: [{ ...signing, kid: "test-es256", alg: "ES256", use: "sig" }] },
    cookies: { keys: ["test-cookie-key-0123456789abcdef"] },
    scopes: ["openid", "profile", "roles"],
    claims: { openid: ["sub"], profile: ["name"], roles: ["roles"] },
    // The roles in the ID token itself, not only at the userinfo endpoint.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, i) => `/interaction/${i.uid}` },
    async findAccount(ctx, id) {
      const u = users[id];
      if (!u) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, name: u.name, roles: u.roles }) };
    },
  });
  handler = provider.callback();
  console.log(JSON.stringify({ issuer }));
});
