// Varsel's OpenID provider for development and tests. NEVER for production:
// an agency signs its staff in with its own identity provider (Entra ID,
// ID-porten/Ansattporten, ...). This one checks plain-text passwords from a
// JSON file, keeps sessions in memory and listens on loopback only.
//
//   node server.js --dir DIR --config FILE --port PORT
//
// DIR holds jwks.json (the signing key, generated on first start and reused).
// deploy/oidc/oidc.sh starts it; see deploy/oidc/README.md.
//
// The log (stdout) has one line per request: method, path without the query
// string, status. It never has a password, a code, a token or a query string
// (an end-session request carries the ID token in its query).
import { randomBytes, timingSafeEqual, createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync, renameSync, existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    dir: { type: 'string' },
    config: { type: 'string' },
    port: { type: 'string' },
  },
});
if (!args.dir || !args.config || !args.port) {
  console.error('usage: node server.js --dir DIR --config FILE --port PORT');
  process.exit(2);
}
const port = Number(args.port);
const issuer = `http://127.0.0.1:${port}`;

function log(msg) {
  console.log(`${new Date().toISOString()} ${msg}`);
}

function fail(msg) {
  console.error(`oidc: ${msg}`);
  process.exit(1);
}

// ---- configuration ---------------------------------------------------------

let config;
try {
  config = JSON.parse(readFileSync(args.config, 'utf8'));
} catch (err) {
  fail(`cannot read config ${args.config}: ${err.message}`);
}

const isStr = (v) => typeof v === 'string' && v !== '';
const isStrArray = (v) => Array.isArray(v) && v.every(isStr);

if (!Array.isArray(config.clients) || config.clients.length === 0) fail('config: "clients" must be a non-empty array');
if (!Array.isArray(config.users)) fail('config: "users" must be an array');

// Clients are oidc-provider client metadata; what a config leaves out gets
// the portal's defaults. Keys starting with "_" are comments.
const clients = config.clients.map((c, i) => {
  if (!isStr(c.client_id)) fail(`config: clients[${i}].client_id is missing`);
  if (!isStrArray(c.redirect_uris) || c.redirect_uris.length === 0) fail(`config: clients[${i}].redirect_uris must be a non-empty array of URLs`);
  const meta = Object.fromEntries(Object.entries(c).filter(([k]) => !k.startsWith('_')));
  return {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    post_logout_redirect_uris: [],
    ...meta,
  };
});

// Users. The passwords are plain text in the config: acceptable ONLY because
// this is a development and test provider with made-up demo staff.
const users = new Map();
for (const [i, u] of config.users.entries()) {
  if (!isStr(u.username)) fail(`config: users[${i}].username is missing`);
  if (!isStr(u.password)) fail(`config: users[${i}].password is missing`);
  if (!isStr(u.agency)) fail(`config: users[${i}].agency is missing`);
  if (!isStrArray(u.groups ?? [])) fail(`config: users[${i}].groups must be an array of strings`);
  if (u.office !== undefined && u.office !== null && !isStr(u.office)) fail(`config: users[${i}].office must be a string when present`);
  const sub = u.sub ?? u.username;
  if (users.has(sub)) fail(`config: two users have sub ${sub}`);
  users.set(sub, {
    sub,
    username: u.username,
    password: u.password,
    name: u.name ?? u.username,
    agency: u.agency,
    office: u.office ?? undefined,
    groups: u.groups ?? [],
  });
}
const byUsername = new Map([...users.values()].map((u) => [u.username, u]));

// checkPassword compares in constant time (over hashes, so the length does
// not leak either) and does the same work for an unknown username.
const dummy = createHash('sha256').update(randomBytes(32)).digest();
function checkPassword(username, password) {
  const u = byUsername.get(username);
  const want = u ? createHash('sha256').update(u.password).digest() : dummy;
  const got = createHash('sha256').update(String(password)).digest();
  return timingSafeEqual(want, got) && u ? u : undefined;
}

// ---- signing key -----------------------------------------------------------

function loadOrCreateJwks() {
  const file = path.join(args.dir, 'jwks.json');
  if (existsSync(file)) {
    return JSON.parse(readFileSync(file, 'utf8'));
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = createHash('sha256').update(jwk.n).digest('base64url').slice(0, 16);
  const jwks = { keys: [{ ...jwk, kid, use: 'sig', alg: 'RS256' }] };
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
  log(`generated a new RS256 signing key (kid ${kid}) in ${file}`);
  return jwks;
}

// ---- HTML ------------------------------------------------------------------

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

// No inline script anywhere, and none needed: the stylesheet is a file of
// its own, so the pages run under a CSP that allows no script at all.
// (No form-action: browsers apply it to the redirects after a POST too, and
// the last one goes to the client's redirect URI on another port.)
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'";
const CSS = `
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;font-size:1.0625rem;line-height:1.5;color:#1a1a1a;background:#f3f4f6}
header{background:#0b3d66;color:#fff;padding:.75rem 1.5rem}
header p{margin:0;font-weight:600}
main{max-width:28rem;margin:2rem auto;padding:1.5rem 2rem 2rem;background:#fff;border:1px solid #c6c9cc;border-radius:6px}
h1{font-size:1.6rem;margin:0 0 .5rem}
p.note{color:#3d3d3d;margin:.25rem 0 1.25rem}
label{display:block;font-weight:600;margin-top:1rem}
input{display:block;width:100%;margin-top:.25rem;padding:.55rem .6rem;font:inherit;color:#1a1a1a;background:#fff;border:2px solid #5c5c5c;border-radius:4px}
input:focus,button:focus{outline:3px solid #ff9100;outline-offset:2px}
button{margin-top:1.5rem;padding:.6rem 1.2rem;font:inherit;font-weight:600;border-radius:4px;cursor:pointer}
button.primary{color:#fff;background:#0b3d66;border:2px solid #0b3d66}
button.secondary{color:#0b3d66;background:#fff;border:2px solid #0b3d66}
.actions{display:flex;gap:1rem;flex-wrap:wrap;align-items:center}
.error{margin:1rem 0 0;padding:.75rem 1rem;color:#7a0000;background:#fdecec;border:2px solid #b00000;border-radius:4px}
footer{max-width:28rem;margin:0 auto 2rem;font-size:.9rem;color:#3d3d3d;text-align:center}
`;

function page(ctxOrRes, status, title, body) {
  const html = `<!DOCTYPE html>
<html lang="nb">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} – Varsel (utvikling)</title>
<link rel="stylesheet" href="/assets/varsel.css">
</head>
<body>
<header><p>Varsel – innlogging for utvikling og test</p></header>
<main>
${body}
</main>
<footer><p>Testinnlogging med demobrukere. Ikke for produksjon.</p></footer>
</body>
</html>
`;
  if (ctxOrRes.res) { // a koa context (oidc-provider's own pages)
    ctxOrRes.status = status;
    ctxOrRes.type = 'html';
    ctxOrRes.set('Content-Security-Policy', CSP);
    ctxOrRes.set('Cache-Control', 'no-store');
    ctxOrRes.body = html;
    return;
  }
  const res = ctxOrRes;
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Content-Security-Policy', CSP);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.end(html);
}

function loginPage(res, uid, clientName, username, failed) {
  const alert = failed
    ? '<p class="error" role="alert" id="login-error">Feil brukernavn eller passord. Prøv igjen.</p>'
    : '';
  const described = failed ? ' aria-describedby="login-error"' : '';
  page(res, 200, 'Logg inn', `<h1>Logg inn</h1>
<p class="note">til ${esc(clientName)}</p>
${alert}
<form method="post" action="/interaction/${esc(uid)}/login">
<label for="username">Brukernavn</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" required value="${esc(username)}"${described}${failed ? '' : ' autofocus'}>
<label for="password">Passord</label>
<input id="password" name="password" type="password" autocomplete="current-password" required${described}${failed ? ' autofocus' : ''}>
<div class="actions">
<button type="submit" class="primary">Logg inn</button>
</div>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort">
<div class="actions"><button type="submit" class="secondary">Avbryt</button></div>
</form>`);
}

function errorPage(res, status, heading, text) {
  page(res, status, heading, `<h1>${esc(heading)}</h1>\n<p role="alert">${esc(text)}</p>`);
}

// ---- provider --------------------------------------------------------------

const provider = new Provider(issuer, {
  clients,
  jwks: loadOrCreateJwks(),
  cookies: { keys: [randomBytes(32).toString('base64url')] },

  async findAccount(ctx, sub) {
    const u = users.get(sub);
    if (!u) return undefined;
    return {
      accountId: sub,
      async claims() {
        const c = { sub, name: u.name, groups: u.groups, agency: u.agency };
        if (u.office) c.office = u.office;
        return c;
      },
    };
  },

  scopes: ['openid', 'profile', 'varsel'],
  claims: {
    openid: ['sub'],
    profile: ['name'],
    varsel: ['groups', 'agency', 'office'],
  },
  // The portal maps roles from the ID token, so the scopes' claims go in
  // the ID token too, not only in the userinfo answer.
  conformIdTokenClaims: false,

  responseTypes: ['code'],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  pkce: { required: () => true }, // S256 is the only method oidc-provider has

  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },

  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        // form is oidc-provider's hidden form (id op.logoutForm, with its
        // xsrf token); the buttons submit it.
        page(ctx, 200, 'Logg ut', `<h1>Logg ut</h1>
<p>Vil du logge ut av Varsels testinnlogging?</p>
${form}
<div class="actions">
<button type="submit" class="primary" form="op.logoutForm" name="logout" value="yes">Ja, logg ut</button>
<button type="submit" class="secondary" form="op.logoutForm">Nei, forbli innlogget</button>
</div>`);
      },
      async postLogoutSuccessSource(ctx) {
        page(ctx, 200, 'Logget ut', '<h1>Du er logget ut</h1>\n<p>Du kan lukke dette vinduet.</p>');
      },
    },
  },

  async renderError(ctx, out) {
    const desc = out.error_description ? `${out.error}: ${out.error_description}` : out.error;
    page(ctx, ctx.status >= 400 ? ctx.status : 400, 'Feil', `<h1>Noe gikk galt</h1>
<p role="alert">${esc(desc)}</p>
<p>Gå tilbake til tjenesten og start innloggingen på nytt.</p>`);
  },
});

for (const ev of ['server_error', 'authorization.error', 'grant.error', 'end_session.error', 'userinfo.error']) {
  provider.on(ev, (ctx, err) => log(`${ev}: ${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`));
}
provider.on('end_session.success', () => log('end_session: signed out'));

// ---- interactions (login and consent) --------------------------------------

async function readForm(req) {
  const type = req.headers['content-type'] || '';
  if (!type.startsWith('application/x-www-form-urlencoded')) return new URLSearchParams();
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// autoConsent grants the registered client what it asked for: every client
// of this provider is Varsel's own, so there is no consent screen.
async function autoConsent(req, res, interaction) {
  const { prompt: { details }, params, session: { accountId } } = interaction;
  const grant = interaction.grantId
    ? await provider.Grant.find(interaction.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  if (details.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(details.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  const consent = interaction.grantId ? {} : { grantId };
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

async function clientName(clientId) {
  const client = await provider.Client.find(clientId);
  return client?.clientName || clientId;
}

async function interactions(req, res, pathname) {
  const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?$/.exec(pathname);
  if (!m) return errorPage(res, 404, 'Ikke funnet', 'Denne siden finnes ikke.');
  const [, uid, action] = m;
  let interaction;
  try {
    interaction = await provider.interactionDetails(req, res);
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      return errorPage(res, 400, 'Innloggingen er utløpt', 'Gå tilbake til tjenesten og start innloggingen på nytt.');
    }
    throw err;
  }
  if (interaction.uid !== uid) {
    return errorPage(res, 400, 'Innloggingen er utløpt', 'Gå tilbake til tjenesten og start innloggingen på nytt.');
  }
  const prompt = interaction.prompt.name;

  if (!action) {
    if (req.method !== 'GET' && req.method !== 'HEAD') return errorPage(res, 405, 'Ikke tillatt', 'Metoden er ikke tillatt her.');
    if (prompt === 'login') return loginPage(res, uid, await clientName(interaction.params.client_id), '', false);
    if (prompt === 'consent') return autoConsent(req, res, interaction);
    return errorPage(res, 400, 'Noe gikk galt', `Ukjent steg i innloggingen: ${prompt}`);
  }

  if (req.method !== 'POST') return errorPage(res, 405, 'Ikke tillatt', 'Metoden er ikke tillatt her.');
  const form = await readForm(req);
  if (action === 'abort') {
    log('login: cancelled');
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  if (prompt !== 'login') return errorPage(res, 400, 'Noe gikk galt', 'Innloggingen er allerede gjort.');
  const username = (form.get('username') || '').trim();
  const user = checkPassword(username, form.get('password') || '');
  if (!user) {
    log('login: failed (wrong username or password)');
    return loginPage(res, uid, await clientName(interaction.params.client_id), username, true);
  }
  log(`login: ${user.username} signed in`);
  return provider.interactionFinished(req, res, {
    login: { accountId: user.sub, amr: ['pwd'] },
  }, { mergeWithLastSubmission: false });
}

// ---- HTTP ------------------------------------------------------------------

const callback = provider.callback();
const server = http.createServer((req, res) => {
  let pathname = '/';
  try {
    pathname = new URL(req.url, issuer).pathname;
  } catch { /* a bad URL gets the provider's 400 */ }
  res.on('finish', () => log(`${req.method} ${pathname} ${res.statusCode}`));

  if (pathname === '/assets/varsel.css') {
    res.setHeader('Content-Type', 'text/css; charset=utf-8');
    res.setHeader('Cache-Control', 'max-age=300');
    res.end(CSS);
    return;
  }
  if (pathname === '/favicon.ico') {
    res.statusCode = 204;
    res.end();
    return;
  }
  if (pathname.startsWith('/interaction/')) {
    res.setHeader('X-Frame-Options', 'DENY');
    interactions(req, res, pathname).catch((err) => {
      log(`interaction error: ${err.name}: ${err.message}`);
      if (!res.headersSent) errorPage(res, 500, 'Noe gikk galt', 'En feil oppstod i testinnloggingen.');
      else res.end();
    });
    return;
  }
  callback(req, res);
});

server.on('error', (err) => fail(`listen on 127.0.0.1:${port}: ${err.message}`));
server.listen(port, '127.0.0.1', () => {
  log(`listening: issuer ${issuer}, ${clients.length} client(s), ${users.size} user(s)`);
});

function shutdown(signal) {
  // Nothing to save: sessions and codes live in memory and die with it.
  log(`${signal}: stopping`);
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
// A test that dies without its cleanup (a timeout panic, a kill) would leave
// its provider running: oidctest names its own pid here, and the provider
// stops once that process is gone.
const watch = Number(process.env.VARSEL_OIDC_WATCH_PID || 0);
if (watch > 0) {
  setInterval(() => {
    try {
      process.kill(watch, 0);
    } catch {
      shutdown(`process ${watch} is gone`);
    }
  }, 2000).unref();
}
