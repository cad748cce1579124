#!/usr/bin/env node
// Smoke test of the yardsticks, without Rust: starts a tiny fake Slack Web API and a
// tiny fake Microsoft token issuer + Bot Connector on loopback (the same shapes as
// Waiver's fakes in src/fakes/), spawns bolt.js and botbuilder.js, sends them signed
// (and badly signed) requests, and checks their answers.
//
//   node smoke.js                     the checks
//   SMOKE_LOAD_SECONDS=5 node smoke.js   then a rough closed-loop load per hot path
//   SMOKE_CONCURRENCY=64 (default)       connections of the load
//
// Every address is 127.0.0.1; every phase is bounded and the children are stopped.

'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const path = require('node:path');

const SECRET = 'smoke-signing-secret';
const BOT_TOKEN = 'xoxb-smoke';
const APP_ID = '00000000-0000-0000-0000-0000000b0700';
const APP_PASSWORD = 'smoke-app-password';
const TENANT = '11111111-2222-3333-4444-555555555555';
const ISSUER = 'https://api.botframework.com';
const NOAH = 'U0NW00001';
const JAMES = 'U0NW00026';
const NOAH_AAD = 'aaaaaaaa-0000-0000-0000-000000000001';
const CHANNEL = '19:c010a0b0c0d0e0f101112131415161718@thread.tacv2';

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}${detail ? `: ${detail}` : ''}`);
  }
}

// ---------------------------------------------------------------------------------
// HTTP helpers.

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.setTimeout(10000, () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function listen(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.keepAliveTimeout = 30000;
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function json(res, status, value) {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function freePort() {
  const s = await listen(() => {});
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(pred, ms = 5000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (pred()) return true;
    await sleep(10);
  }
  return pred();
}

// ---------------------------------------------------------------------------------
// The fake Slack Web API (src/fakes/slack.rs, lean mode): answers and counts.

const slackCalls = [];
let slackLean = false;
let slackCount = 0;

async function fakeSlack() {
  return listen(async (req, res) => {
    const body = await readBody(req);
    const method = req.url.replace(/^\/api\//, '').split('?')[0];
    slackCount += 1;
    const auth = req.headers.authorization || '';
    if (auth !== `Bearer ${BOT_TOKEN}`) return json(res, 200, { ok: false, error: 'invalid_auth' });
    if (!slackLean) {
      const params = req.headers['content-type']?.startsWith('application/json')
        ? JSON.parse(body)
        : Object.fromEntries(new URLSearchParams(body));
      slackCalls.push({ method, params });
    }
    switch (method) {
      case 'views.open':
        return json(res, 200, { ok: true, view: { id: 'V0SMOKE' } });
      case 'chat.update':
        return json(res, 200, { ok: true, channel: 'C0AIXINTAKE', ts: '1', text: '' });
      default:
        return json(res, 200, { ok: true });
    }
  });
}

function slackSign(body, ts = Math.floor(Date.now() / 1000), secret = SECRET) {
  const sig = `v0=${crypto.createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}`;
  return { 'x-slack-request-timestamp': String(ts), 'x-slack-signature': sig };
}

function slackPost(base, p, body, headers) {
  return request(`${base}${p}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body,
  });
}

// The slash command form Slack sends (src/fakes/slack/workspace.rs `command_body`).
function commandBody(apiUrl, user, trigger) {
  return new URLSearchParams({
    token: 'legacy-verification-token',
    team_id: 'T0NWIND01',
    team_domain: 'northwind',
    channel_id: 'C0GENERAL',
    channel_name: 'general',
    user_id: user,
    user_name: user,
    command: '/ai-exception',
    text: '',
    api_app_id: 'A0WAIVER',
    is_enterprise_install: 'false',
    response_url: `${apiUrl.replace(/\/$/, '')}/hooks/commands/${user}`,
    trigger_id: trigger,
  }).toString();
}

// A click on a card's Complete button (workspace.rs `click_payload`).
function clickBody(apiUrl, user, r, trigger) {
  const ts = `1764000000.${String(r).padStart(6, '0')}`;
  const value = JSON.stringify({ r, v: 1 });
  const blocks = [
    { type: 'header', text: { type: 'plain_text', text: `AIX-${String(r).padStart(4, '0')} · Use an LLM coding assistant` } },
    { type: 'section', text: { type: 'mrkdwn', text: '*Business justification*\nSpeeds up test writing for the ingestion team.' } },
    {
      type: 'actions',
      block_id: 'b',
      elements: [
        { type: 'button', action_id: 'complete', text: { type: 'plain_text', text: 'Complete' }, style: 'primary', value },
        { type: 'button', action_id: 'send_back', text: { type: 'plain_text', text: 'Send back…' }, value },
      ],
    },
  ];
  const payload = {
    type: 'block_actions',
    user: { id: user, username: user, name: user, team_id: 'T0NWIND01' },
    api_app_id: 'A0WAIVER',
    token: 'legacy-verification-token',
    container: { type: 'message', message_ts: ts, channel_id: 'C0AIXINTAKE', is_ephemeral: false },
    trigger_id: trigger,
    team: { id: 'T0NWIND01', domain: 'northwind' },
    channel: { id: 'C0AIXINTAKE', name: 'C0AIXINTAKE' },
    message: { type: 'message', ts, text: `AIX-${r} · Completeness review`, bot_id: 'B0WAIVER', user: 'U0WAIVERBOT', blocks },
    response_url: `${apiUrl.replace(/\/$/, '')}/hooks/actions/${user}`,
    actions: [
      {
        type: 'button',
        action_id: 'complete',
        block_id: 'b',
        value,
        text: { type: 'plain_text', text: 'Complete' },
        action_ts: `${Math.floor(Date.now() / 1000)}.000100`,
      },
    ],
  };
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

function submissionBody(user) {
  const payload = {
    type: 'view_submission',
    team: { id: 'T0NWIND01', domain: 'northwind' },
    user: { id: user, username: user, name: user, team_id: 'T0NWIND01' },
    api_app_id: 'A0WAIVER',
    token: 'legacy-verification-token',
    trigger_id: 'smoke-trigger-submit',
    view: {
      id: 'V0SMOKE',
      team_id: 'T0NWIND01',
      type: 'modal',
      callback_id: 'intake',
      private_metadata: '{}',
      hash: 'V0SMOKE.hash',
      app_id: 'A0WAIVER',
      bot_id: 'B0WAIVER',
      root_view_id: 'V0SMOKE',
      previous_view_id: null,
      blocks: [],
      state: {
        values: {
          title: { value: { type: 'plain_text_input', value: 'Summarise support tickets' } },
          policy: { value: { type: 'static_select', selected_option: { value: 'aiup', text: { type: 'plain_text', text: 'x' } } } },
          regions: { value: { type: 'multi_static_select', selected_options: [{ value: 'eu' }, { value: 'us' }] } },
          start: { value: { type: 'datepicker', selected_date: '2026-01-05' } },
          business_owner: { value: { type: 'users_select', selected_user: NOAH } },
        },
      },
    },
    response_urls: [],
  };
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

// ---------------------------------------------------------------------------------
// The fake token issuer and Bot Connector (src/fakes/teams.rs).

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function rsaKey(kid, endorsements) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const { n, e } = publicKey.export({ format: 'jwk' });
  return { kid, privateKey, jwk: { kty: 'RSA', use: 'sig', kid, n, e, endorsements } };
}

function sign(claims, key, { kid = key.kid, alg = 'RS256' } = {}) {
  const head = b64url(JSON.stringify({ alg, typ: 'JWT', kid }));
  const body = b64url(JSON.stringify(claims));
  const input = `${head}.${body}`;
  let sig;
  if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), key.privateKey);
  else if (alg === 'HS256') sig = crypto.createHmac('sha256', key.secret).update(input).digest();
  else sig = Buffer.alloc(0);
  return `${input}.${b64url(sig)}`;
}

const endorsed = rsaKey('fake-key-msteams', ['msteams', 'emulator']);
const unendorsed = rsaKey('fake-key-webchat', ['webchat']);
const stranger = rsaKey('fake-key-msteams', ['msteams']); // same kid, not in the JWKS

const teamsCalls = [];
const issuedTokens = new Set();

async function fakeTeams() {
  let base;
  const server = await listen(async (req, res) => {
    const body = await readBody(req);
    const p = req.url.split('?')[0];
    const kind =
      req.method === 'GET' && p === '/openid'
        ? 'openid'
        : req.method === 'GET' && p === '/keys'
          ? 'keys'
          : req.method === 'POST' && p === '/token'
            ? 'token'
            : /^\/connector\/v3\/conversations\/[^/]+\/activities(\/[^/]+)?$/.test(p)
              ? 'reply'
              : 'unknown';
    teamsCalls.push({ kind, path: p, body });
    switch (kind) {
      case 'openid':
        return json(res, 200, {
          issuer: ISSUER,
          authorization_endpoint: `${base}/authorize`,
          jwks_uri: `${base}/keys`,
          id_token_signing_alg_values_supported: ['RS256'],
          token_endpoint_auth_methods_supported: ['private_key_jwt'],
        });
      case 'keys':
        return json(res, 200, { keys: [endorsed.jwk, unendorsed.jwk] });
      case 'token': {
        const f = Object.fromEntries(new URLSearchParams(body));
        const ok =
          f.grant_type === 'client_credentials' &&
          f.client_id === APP_ID &&
          f.client_secret === APP_PASSWORD &&
          f.scope === 'https://api.botframework.com/.default';
        if (!ok) return json(res, 401, { error: 'invalid_client' });
        const token = `fake-connector-token-${issuedTokens.size + 1}`;
        issuedTokens.add(token);
        return json(res, 200, { token_type: 'Bearer', expires_in: 3600, ext_expires_in: 3600, access_token: token });
      }
      case 'reply': {
        const token = (req.headers.authorization || '').replace(/^Bearer /, '');
        if (!issuedTokens.has(token)) return json(res, 401, { message: 'Authorization has been denied for this request.' });
        return json(res, 201, { id: `activity-${teamsCalls.length}` });
      }
      default:
        return json(res, 404, { error: { code: 'NotFound' } });
    }
  });
  base = `http://127.0.0.1:${server.address().port}`;
  return { server, base };
}

function claims(serviceUrl, over = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { iss: ISSUER, aud: APP_ID, serviceurl: serviceUrl, nbf: now - 5, exp: now + 3600, iat: now - 5, ...over };
}

// The invoke the load generator sends (benches/teams.rs).
function invoke(serviceUrl, r, i, over = {}) {
  const message = `act-${r}`;
  return {
    type: 'invoke',
    name: 'adaptiveCard/action',
    id: `bench-${i}`,
    serviceUrl,
    channelId: 'msteams',
    from: { id: `29:${NOAH_AAD}`, aadObjectId: NOAH_AAD },
    conversation: { id: `${CHANNEL};messageid=${message}`, conversationType: 'channel', tenantId: TENANT },
    channelData: { channel: { id: CHANNEL }, tenant: { id: TENANT } },
    replyToId: message,
    value: { action: { type: 'Action.Execute', verb: 'complete', data: { action: 'complete', r, v: 1 } } },
    ...over,
  };
}

function teamsPost(base, activity, token) {
  const headers = { 'content-type': 'application/json' };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  return request(`${base}/api/messages`, { method: 'POST', headers, body: JSON.stringify(activity) });
}

// ---------------------------------------------------------------------------------
// Children.

const children = [];

function start(script, env) {
  const child = spawn(process.execPath, [path.join(__dirname, script)], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  child.log = '';
  child.stderr.on('data', (d) => {
    child.log += d.toString();
    if (child.log.length > 200000) child.log = child.log.slice(-100000);
  });
  children.push(child);
  return child;
}

async function ready(base, child) {
  for (let i = 0; i < 200; i += 1) {
    if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}:\n${child.log}`);
    try {
      if ((await request(`${base}/readyz`)).status === 200) return;
    } catch {
      // not yet
    }
    await sleep(50);
  }
  throw new Error(`not ready at ${base}:\n${child.log}`);
}

function stopAll() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
}
process.on('exit', stopAll);

// ---------------------------------------------------------------------------------
// A rough closed-loop load: `concurrency` workers, each sending its next request as
// soon as the last is answered, for `seconds`.

async function load(name, concurrency, seconds, make, ok) {
  const latencies = [];
  let errors = 0;
  let i = 0;
  const started = process.hrtime.bigint();
  const deadline = Date.now() + seconds * 1000;
  async function worker() {
    while (Date.now() < deadline) {
      const n = i++;
      const { url, options } = make(n);
      const t0 = process.hrtime.bigint();
      try {
        const r = await request(url, options);
        if (ok(r)) latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        else errors += 1;
      } catch {
        errors += 1;
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  const pct = (q) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : NaN);
  console.log(
    `load ${name.padEnd(40)} ${String(Math.round(latencies.length / elapsed)).padStart(6)}/s  p50 ${pct(0.5).toFixed(2)} ms  p99 ${pct(0.99).toFixed(2)} ms  (${latencies.length} ok, ${errors} errors, ${concurrency} connections)`,
  );
  return { rate: latencies.length / elapsed, errors, count: latencies.length };
}

function rssMb(pid) {
  try {
    const status = require('node:fs').readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
  } catch {
    return NaN;
  }
}

// ---------------------------------------------------------------------------------

async function main() {
  const slack = await fakeSlack();
  const apiUrl = `http://127.0.0.1:${slack.address().port}/api/`;
  const teams = await fakeTeams();
  const serviceUrl = `${teams.base}/connector/`;

  const boltPort = await freePort();
  const bolt = start('bolt.js', {
    PORT: String(boltPort),
    SLACK_SIGNING_SECRET: SECRET,
    SLACK_BOT_TOKEN: BOT_TOKEN,
    SLACK_API_URL: apiUrl,
  });
  const botPort = await freePort();
  const bot = start('botbuilder.js', {
    PORT: String(botPort),
    MicrosoftAppId: APP_ID,
    MicrosoftAppPassword: APP_PASSWORD,
    MicrosoftAppTenantId: TENANT,
    TEAMS_OPENID_METADATA_URL: `${teams.base}/openid`,
    TEAMS_TOKEN_URL: `${teams.base}/token`,
  });
  const boltBase = `http://127.0.0.1:${boltPort}`;
  const botBase = `http://127.0.0.1:${botPort}`;
  await ready(boltBase, bolt);
  await ready(botBase, bot);
  console.log(`resident memory after start: bolt.js ${rssMb(bolt.pid).toFixed(1)} MB, botbuilder.js ${rssMb(bot.pid).toFixed(1)} MB`);
  check('no Slack API call at start (no auth.test)', slackCount === 0, `${slackCount} calls`);
  check(
    'the signing keys fetched once, at start',
    teamsCalls.filter((c) => c.kind === 'keys').length === 1,
    JSON.stringify(teamsCalls.map((c) => c.kind)),
  );

  // --- Slack ----------------------------------------------------------------------
  {
    const body = commandBody(apiUrl, JAMES, 'smoke-trigger-1');
    const r = await slackPost(boltBase, '/slack/commands', body, slackSign(body));
    check('slash command: 200 with an empty body', r.status === 200 && r.body === '', `${r.status} ${JSON.stringify(r.body)}`);
    await until(() => slackCalls.some((c) => c.method === 'views.open'));
    const call = slackCalls.find((c) => c.method === 'views.open');
    const view = call && JSON.parse(call.params.view);
    check(
      'slash command: views.open with the intake modal (15 inputs, callback intake)',
      call && call.params.trigger_id === 'smoke-trigger-1' && view.callback_id === 'intake' && view.blocks.filter((b) => b.type === 'input').length === 15,
      JSON.stringify(call),
    );
    const stats = JSON.parse((await request(`${boltBase}/yardstick/stats`)).body);
    check('no auth.test before the first views.open', !slackCalls.some((c) => c.method === 'auth.test'), JSON.stringify(stats));
  }
  {
    const body = clickBody(apiUrl, NOAH, 1, 'smoke-trigger-2');
    const r = await slackPost(boltBase, '/slack/interactions', body, slackSign(body));
    check('click Complete: 200 with an empty body', r.status === 200 && r.body === '', `${r.status} ${JSON.stringify(r.body)}`);
    await until(() => slackCalls.some((c) => c.method === 'chat.update'));
    const call = slackCalls.find((c) => c.method === 'chat.update');
    const blocks = call && JSON.parse(call.params.blocks);
    check(
      'click Complete: chat.update of the card (channel, ts, closed card)',
      call && call.params.channel === 'C0AIXINTAKE' && call.params.ts === '1764000000.000001' && blocks.length === 6 && /Marked complete/.test(call.params.text),
      JSON.stringify(call),
    );
    const again = await slackPost(boltBase, '/slack/interactions', body, slackSign(body));
    await sleep(100);
    check(
      'click Complete again: acknowledged, no second update (no longer awaiting review)',
      again.status === 200 && slackCalls.filter((c) => c.method === 'chat.update').length === 1,
    );
    const stats = JSON.parse((await request(`${boltBase}/yardstick/stats`)).body);
    check('click Complete: request 1 in_assessment, one audit entry', stats.in_assessment === 1 && stats.audit === 1, JSON.stringify(stats));
  }
  {
    const body = submissionBody(JAMES);
    const r = await slackPost(boltBase, '/slack/interactions', body, slackSign(body));
    check('view submission (intake): 200 with an empty body', r.status === 200 && r.body === '', `${r.status} ${JSON.stringify(r.body)}`);
    const stats = JSON.parse((await request(`${boltBase}/yardstick/stats`)).body);
    check('view submission: a request filed', stats.filed === 1, JSON.stringify(stats));
  }
  {
    const body = commandBody(apiUrl, JAMES, 'smoke-trigger-3');
    const bad = await slackPost(boltBase, '/slack/commands', body, slackSign(body, undefined, 'not-the-secret'));
    check('bad Slack signature: 401', bad.status === 401, `${bad.status} ${bad.body}`);
    const old = await slackPost(boltBase, '/slack/commands', body, slackSign(body, Math.floor(Date.now() / 1000) - 600));
    check('Slack timestamp 10 minutes old: 401', old.status === 401, `${old.status} ${old.body}`);
    const tampered = await slackPost(boltBase, '/slack/commands', `${body}&x=1`, slackSign(body));
    check('Slack body changed after signing: 401', tampered.status === 401, `${tampered.status}`);
    const none = await slackPost(boltBase, '/slack/commands', body, {});
    check('no Slack signature: 401', none.status === 401, `${none.status}`);
    await sleep(100);
    check('no modal opened for a refused command', slackCalls.filter((c) => c.method === 'views.open').length === 1);
  }

  // --- Teams ----------------------------------------------------------------------
  const token = sign(claims(serviceUrl), endorsed);
  {
    const r = await teamsPost(botBase, invoke(serviceUrl, 1, 1), token);
    let card;
    try {
      card = JSON.parse(r.body);
    } catch {
      card = {};
    }
    check(
      'invoke adaptiveCard/action: 200 with the refreshed card',
      r.status === 200 && r.body.includes('application/vnd.microsoft.card.adaptive') && card.value?.type === 'AdaptiveCard' && card.value.body.length === 17,
      `${r.status} ${r.body.slice(0, 300)}`,
    );
    const again = await teamsPost(botBase, invoke(serviceUrl, 1, 2), token);
    check(
      'invoke again: 200 with a message (no longer awaiting review)',
      again.status === 200 && again.body.includes('application/vnd.microsoft.activity.message'),
      `${again.status} ${again.body.slice(0, 200)}`,
    );
    const r2 = await teamsPost(botBase, invoke(serviceUrl, 2, 3), token);
    check('invoke for another request with the same token: 200 + card', r2.status === 200 && r2.body.includes('card.adaptive'));
    const stats = JSON.parse((await request(`${botBase}/yardstick/stats`)).body);
    check('invokes: requests 1 and 2 in_assessment, two audit entries', stats.in_assessment === 2 && stats.audit === 2, JSON.stringify(stats));
  }
  {
    const refusals = [
      ['no token', undefined],
      ['forged token (same kid, key not in the JWKS)', sign(claims(serviceUrl), stranger)],
      ['token for another bot (audience)', sign(claims(serviceUrl, { aud: 'another-app' }), endorsed)],
      ['another issuer', sign(claims(serviceUrl, { iss: 'https://evil.example' }), endorsed)],
      ['expired token (beyond 5 minutes of skew)', sign(claims(serviceUrl, { exp: Math.floor(Date.now() / 1000) - 600 }), endorsed)],
      ['not yet valid (beyond 5 minutes of skew)', sign(claims(serviceUrl, { nbf: Math.floor(Date.now() / 1000) + 900 }), endorsed)],
      ['serviceurl claim of another service', sign(claims('http://127.0.0.1:1/connector/'), endorsed)],
      ['key not endorsed for msteams', sign(claims(serviceUrl), unendorsed)],
      ['unknown kid', sign(claims(serviceUrl), endorsed, { kid: 'made-up' })],
      ['alg none', sign(claims(serviceUrl), endorsed, { alg: 'none' })],
      ['HS256 keyed with the public key', sign(claims(serviceUrl), { kid: endorsed.kid, secret: endorsed.jwk.n }, { alg: 'HS256' })],
      ['signature of another token', `${token.split('.').slice(0, 2).join('.')}.${sign(claims(serviceUrl, { aud: 'x' }), endorsed).split('.')[2]}`],
    ];
    for (const [name, bad] of refusals) {
      const r = await teamsPost(botBase, invoke(serviceUrl, 50, 100), bad);
      check(`Teams ${name}: 401`, r.status === 401, `${r.status} ${r.body.slice(0, 200)}`);
    }
    const stats = JSON.parse((await request(`${botBase}/yardstick/stats`)).body);
    check('no refused invoke changed anything', stats.in_assessment === 2 && stats.requests === 2, JSON.stringify(stats));
    const endorsedWebchat = await teamsPost(botBase, invoke(serviceUrl, 60, 101, { channelId: 'webchat' }), token);
    check("a channel the key is not endorsed for (webchat): 401", endorsedWebchat.status === 401, `${endorsedWebchat.status}`);
  }
  {
    // Outbound: a message to the bot is answered by a reply through the connector,
    // with a token from the fake token endpoint.
    const activity = {
      type: 'message',
      id: 'msg-1',
      text: 'hello',
      serviceUrl,
      channelId: 'msteams',
      from: { id: `29:${NOAH_AAD}`, aadObjectId: NOAH_AAD },
      recipient: { id: `28:${APP_ID}` },
      conversation: { id: 'a:personal-1', conversationType: 'personal', tenantId: TENANT },
      channelData: { tenant: { id: TENANT } },
    };
    const r = await teamsPost(botBase, activity, token);
    const replied = await until(() => teamsCalls.some((c) => c.kind === 'reply'));
    check(
      'message: 200, and a reply posted with a token from TEAMS_TOKEN_URL',
      r.status === 200 && replied && teamsCalls.some((c) => c.kind === 'token') && issuedTokens.size === 1,
      `${r.status} ${JSON.stringify(teamsCalls.map((c) => c.kind))}\n${bot.log.slice(-2000)}`,
    );
  }
  check(
    'the signing keys were fetched once for every activity',
    teamsCalls.filter((c) => c.kind === 'keys').length === 1 && teamsCalls.filter((c) => c.kind === 'openid').length === 1,
    JSON.stringify(teamsCalls.map((c) => c.kind)),
  );

  // --- Rough load -------------------------------------------------------------------
  const seconds = Number(process.env.SMOKE_LOAD_SECONDS || 0);
  if (seconds > 0) {
    const concurrency = Number(process.env.SMOKE_CONCURRENCY || 64);
    slackLean = true;
    console.log(`\nrough closed-loop load, ${seconds} s each, client and server on the same cores`);
    console.log(`RSS after the checks: bolt.js ${rssMb(bolt.pid).toFixed(1)} MB, botbuilder.js ${rssMb(bot.pid).toFixed(1)} MB`);
    const before = slackCount;
    const cmd = await load('Bolt: signed slash command', concurrency, seconds, (n) => {
      const body = commandBody(apiUrl, JAMES, `bench-trigger-${n}`);
      return { url: `${boltBase}/slack/commands`, options: { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...slackSign(body) }, body } };
    }, (r) => r.status === 200 && r.body === '');
    await until(() => slackCount - before >= cmd.count, 30000);
    console.log(`  views.open calls: ${slackCount - before} for ${cmd.count} commands; RSS ${rssMb(bolt.pid).toFixed(1)} MB`);
    const before2 = slackCount;
    const clicks = await load('Bolt: signed click (in-memory + update)', concurrency, seconds, (n) => {
      const body = clickBody(apiUrl, NOAH, 1000 + n, `bench-trigger-${n}`);
      return { url: `${boltBase}/slack/interactions`, options: { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...slackSign(body) }, body } };
    }, (r) => r.status === 200 && r.body === '');
    await until(() => slackCount - before2 >= clicks.count, 30000);
    const bstats = JSON.parse((await request(`${boltBase}/yardstick/stats`)).body);
    console.log(`  chat.update calls: ${slackCount - before2} for ${clicks.count} clicks; in_assessment ${bstats.in_assessment}; RSS ${rssMb(bolt.pid).toFixed(1)} MB`);
    await load('botbuilder: signed invoke (in-memory + card)', concurrency, seconds, (n) => ({
      url: `${botBase}/api/messages`,
      options: {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify(invoke(serviceUrl, 1000 + n, 1000 + n)),
      },
    }), (r) => r.status === 200 && r.body.includes('application/vnd.microsoft.card.adaptive'));
    const tstats = JSON.parse((await request(`${botBase}/yardstick/stats`)).body);
    console.log(`  in_assessment ${tstats.in_assessment}; keys fetched ${teamsCalls.filter((c) => c.kind === 'keys').length} time(s); RSS ${rssMb(bot.pid).toFixed(1)} MB`);
  }

  stopAll();
  slack.close();
  teams.server.close();
  agent.destroy();
  console.log(`\n${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
  if (failed > 0) {
    console.log(`--- bolt.js stderr ---\n${bolt.log.slice(-3000)}\n--- botbuilder.js stderr ---\n${bot.log.slice(-3000)}`);
  }
}

const watchdog = setTimeout(() => {
  console.log('FAIL smoke test timed out');
  stopAll();
  process.exit(1);
}, 10 * 60 * 1000);
watchdog.unref();

main().catch((e) => {
  console.log(`FAIL ${e.stack || e}`);
  stopAll();
  process.exit(1);
});
