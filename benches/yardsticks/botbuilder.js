#!/usr/bin/env node
// Yardstick: a Microsoft Bot Framework SDK for JavaScript (botbuilder) bot doing
// Waiver's Teams hot path with in-memory state (DESIGN §7), for the load generator in
// benches/ to drive exactly as it drives `waiver serve`.
//
//   POST /api/messages        Bot Framework activities; `adaptiveCard/action`
//                             (Action.Execute, verb `complete`, data.r = request): in
//                             memory (submitted → in_assessment, audit entry), answered
//                             200 with the refreshed Adaptive Card
//   GET  /readyz              200 once listening
//   GET  /yardstick/stats     JSON counts (requests, in_assessment, audit, refusals)
//
// Inbound tokens are validated by botbuilder's own CloudAdapter +
// ConfigurationBotFrameworkAuthentication (ChannelValidation): Bearer JWT, RS256/384/512,
// issuer, signature by a key of the JWKS that the OpenID metadata names (cached for 24
// hours), five minutes of clock skew, audience = MicrosoftAppId, the activity's
// channelId among the key's endorsements, the `serviceurl` claim = the activity's
// serviceUrl. Every setting is the public cloud's except the two URLs that must point at
// the fake issuer (see README.md). Nothing is disabled.
//
// Environment:
//   PORT                          port to listen on (HOST, default 127.0.0.1)
//   MicrosoftAppId                the bot's app id (the tokens' audience)
//   MicrosoftAppPassword          its client secret (for outbound tokens)
//   MicrosoftAppTenantId          optional; set → SingleTenant app
//   TEAMS_OPENID_METADATA_URL     OpenID metadata of the token issuer (lists the JWKS)
//   TEAMS_TOKEN_URL               the AAD client-credentials token endpoint for outbound
//                                 calls to the Bot Connector
//   TEAMS_TOKEN_ISSUER            optional; default https://api.botframework.com

'use strict';

const http = require('node:http');
const {
  CloudAdapter,
  ConfigurationBotFrameworkAuthentication,
  ConfigurationServiceClientCredentialFactory,
  TeamsActivityHandler,
  TurnContext,
} = require('botbuilder');
const {
  AppCredentials,
  AuthenticationConstants,
  AuthenticationError,
  MicrosoftAppCredentials,
} = require('botframework-connector');
// Not re-exported by the package's index: the class whose per-URL key cache
// ChannelValidation uses.
const { JwtTokenExtractor } = require('botframework-connector/lib/auth/jwtTokenExtractor');
const { CallerIdConstants } = require('botframework-schema');
const { Register, facts, pad } = require('./register');

function required(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`botbuilder.js: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const port = Number(required('PORT'));
const host = process.env.HOST || '127.0.0.1';
const appId = required('MicrosoftAppId');
const appPassword = required('MicrosoftAppPassword');
const tenantId = process.env.MicrosoftAppTenantId || '';
const openIdMetadataUrl = required('TEAMS_OPENID_METADATA_URL');
const tokenUrl = required('TEAMS_TOKEN_URL');
const tokenIssuer = process.env.TEAMS_TOKEN_ISSUER || AuthenticationConstants.ToBotFromChannelTokenIssuer;

// ---------------------------------------------------------------------------------
// Outbound tokens. botbuilder gets them with MSAL, which accepts only an https AAD
// authority and discovers its endpoints there; the fake issuer is a plain
// client-credentials endpoint on loopback. So the credentials factory is the stock
// ConfigurationServiceClientCredentialFactory (it decides which app ids are valid and
// whether authentication is on), except that for the fake's login URL the credentials
// fetch their token with the same client-credentials POST MSAL would make
// (grant_type, client_id, client_secret, scope = <audience>/.default). Tokens are
// cached by botbuilder's AppCredentials as usual. Not on the invoke hot path: an
// invoke is answered in the HTTP response, with no outbound call.

class ClientCredentialsAppCredentials extends AppCredentials {
  constructor(id, password, tenant, scope, endpoint) {
    super(id, tenant, scope);
    this.appPassword = password;
    this.oAuthEndpoint = endpoint;
  }

  // AppCredentials.getToken calls this when its cache has no valid token.
  async refreshToken() {
    const scope = this.oAuthScope.endsWith('/.default') ? this.oAuthScope : `${this.oAuthScope}/.default`;
    const res = await fetch(this.oAuthEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: this.appId,
        client_secret: this.appPassword,
        scope,
      }),
    });
    if (!res.ok) {
      throw new Error(`token endpoint answered ${res.status}`);
    }
    const t = await res.json();
    return { accessToken: t.access_token, expiresOn: new Date(Date.now() + Number(t.expires_in || 3600) * 1000) };
  }
}

class CredentialFactory extends ConfigurationServiceClientCredentialFactory {
  async createCredentials(id, audience, loginEndpoint, validateAuthority) {
    if (loginEndpoint !== tokenUrl) {
      return super.createCredentials(id, audience, loginEndpoint, validateAuthority);
    }
    if (await this.isAuthenticationDisabled()) {
      return MicrosoftAppCredentials.Empty;
    }
    if (!(await this.isValidAppId(id))) {
      throw new Error('Invalid appId.');
    }
    return new ClientCredentialsAppCredentials(id, appPassword, tenantId, audience, tokenUrl);
  }
}

const credentials = {
  MicrosoftAppId: appId,
  MicrosoftAppPassword: appPassword,
  MicrosoftAppTenantId: tenantId,
  MicrosoftAppType: tenantId ? 'SingleTenant' : 'MultiTenant',
};

// The public cloud's settings (BotFrameworkAuthenticationFactory's defaults for an
// empty ChannelService), but for the OpenID metadata and the login URL. Setting any
// of them makes botbuilder take all of them as given, so all are set.
const authSettings = {
  ...credentials,
  // channel → bot: tokens issued by the Bot Connector, keys from the fake's metadata.
  ToBotFromChannelTokenIssuer: tokenIssuer,
  ToBotFromChannelOpenIdMetadataUrl: openIdMetadataUrl,
  // Only for tokens whose issuer is an Emulator/AAD v1/v2 issuer: kept on loopback.
  ToBotFromEmulatorOpenIdMetadataUrl: openIdMetadataUrl,
  // bot → channel: where outbound tokens come from, and for what audience.
  ToChannelFromBotLoginUrl: tokenUrl,
  ToChannelFromBotOAuthScope: AuthenticationConstants.ToChannelFromBotOAuthScope,
  // The user-token (OAuth sign-in) service: never called here; kept on loopback.
  OAuthUrl: new URL(tokenUrl).origin,
  CallerId: CallerIdConstants.PublicAzureChannel,
  ValidateAuthority: true,
};

// botbuilder refuses a token whose signature, algorithm or nbf jsonwebtoken rejects,
// but lets jsonwebtoken's own error through, which CloudAdapter answers with 500 (only
// an AuthenticationError becomes 401). The same refusals, answered 401 as Waiver and
// the Bot Framework's other SDKs answer them; nothing more is accepted or refused.
const JWT_ERRORS = new Set(['JsonWebTokenError', 'NotBeforeError', 'TokenExpiredError']);

class Authentication extends ConfigurationBotFrameworkAuthentication {
  async authenticateRequest(activity, authHeader) {
    try {
      return await super.authenticateRequest(activity, authHeader);
    } catch (e) {
      if (JWT_ERRORS.has(e?.name)) throw new AuthenticationError(`Unauthorized. ${e.message}`, 401);
      throw e;
    }
  }
}

const auth = new Authentication(authSettings, new CredentialFactory(credentials));
const adapter = new CloudAdapter(auth);
adapter.onTurnError = async (context, error) => {
  console.error(`botbuilder.js: turn failed: ${error.stack || error}`);
};

// ---------------------------------------------------------------------------------
// The bot.

const register = new Register();
const counts = { invokes: 0, refused: 0, unauthorized: 0, messages: 0 };
/** Conversation references, remembered from every activity (as Waiver does). */
const references = new Map();

const CARD = 'application/vnd.microsoft.card.adaptive';
const run = (t) => ({ type: 'TextRun', text: t });
const bold = (t) => ({ type: 'TextRun', text: t, weight: 'Bolder' });
const rich = (inlines) => ({ type: 'RichTextBlock', inlines });
const subtle = (t) => rich([{ type: 'TextRun', text: t, isSubtle: true, size: 'Small' }]);

// The completeness card once marked complete, shaped as Waiver's (src/chat/plan.rs
// `card_message` → src/chat/teams/cards.rs `message`).
function completedCard(request, actor) {
  const c = request.content;
  const reference = `AIX-${pad(request.id)}`;
  return {
    type: 'AdaptiveCard',
    $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
    version: '1.5',
    body: [
      rich([{ type: 'TextRun', text: `${reference} · ${c.title}`, size: 'Large', weight: 'Bolder' }]),
      ...facts(request).map(([l, v]) => rich([bold(`${l}: `), run(v)])),
      rich([bold('Business justification')]),
      rich([run(c.justification)]),
      rich([bold('Compensating controls')]),
      rich([run(c.controls)]),
      subtle(`Completeness review · version ${request.version} · filed ${request.filedAt.toISOString().slice(0, 10)} · governance yardstk`),
      subtle(`Marked complete by ${actor}.`),
    ],
  };
}

const message = (text) => ({ statusCode: 200, type: 'application/vnd.microsoft.activity.message', value: text });

class Bot extends TeamsActivityHandler {
  constructor() {
    super();
    this.onMessage(async (context, next) => {
      counts.messages += 1;
      await context.sendActivity(`Waiver yardstick: ${register.stats().requests} requests in memory.`);
      await next();
    });
  }

  async run(context) {
    const reference = TurnContext.getConversationReference(context.activity);
    references.set(reference.conversation.id, reference);
    return super.run(context);
  }

  async onAdaptiveCardInvoke(context, invokeValue) {
    counts.invokes += 1;
    const { verb, data } = invokeValue.action;
    if (verb !== 'complete') {
      counts.refused += 1;
      return message(`Unknown action ${verb}.`);
    }
    const from = context.activity.from || {};
    const actor = from.aadObjectId || from.id;
    const done = register.complete(Number(data?.r), data?.v, actor);
    if (done.refused) {
      counts.refused += 1;
      return message(done.refused);
    }
    return { statusCode: 200, type: CARD, value: completedCard(done.request, from.name || actor) };
  }
}

const bot = new Bot();

// ---------------------------------------------------------------------------------
// HTTP: Node's own server. CloudAdapter.process wants a parsed body on the request and
// restify/express-style status/header/send/end on the response; this gives it both.

const LIMIT = 1 << 20;

function response(res) {
  let code = 200;
  let body;
  const headers = {};
  return {
    status(c) {
      code = c;
      return this;
    },
    header(k, v) {
      headers[k.toLowerCase()] = v;
      return this;
    },
    send(b) {
      body = b;
      return this;
    },
    end() {
      if (res.writableEnded) return;
      let payload = '';
      if (body !== undefined && body !== null) {
        if (typeof body === 'object' && !Buffer.isBuffer(body)) {
          payload = JSON.stringify(body);
          headers['content-type'] ??= 'application/json; charset=utf-8';
        } else {
          payload = body;
        }
      }
      if (code === 401) counts.unauthorized += 1;
      headers['content-length'] = Buffer.byteLength(payload);
      res.writeHead(code, headers);
      res.end(payload);
    },
  };
}

function plain(res, code, text, type = 'text/plain') {
  res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?', 1)[0];
  if (path === '/readyz' && req.method === 'GET') return plain(res, 200, 'ok');
  if (path === '/yardstick/stats' && req.method === 'GET') {
    return plain(res, 200, JSON.stringify({ ...register.stats(), ...counts, references: references.size }), 'application/json');
  }
  if (path !== '/api/messages') return plain(res, 404, 'not found');
  if (req.method !== 'POST') return plain(res, 405, 'method not allowed');
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > LIMIT) {
      plain(res, 413, 'too large');
      req.destroy();
    } else {
      chunks.push(c);
    }
  });
  req.on('end', () => {
    if (res.writableEnded) return;
    try {
      req.body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return plain(res, 400, 'not JSON');
    }
    adapter.process(req, response(res), (context) => bot.run(context)).catch((e) => {
      console.error(`botbuilder.js: ${e.stack || e}`);
      if (!res.headersSent) plain(res, 500, 'internal error');
    });
  });
});

(async () => {
  // Warm botbuilder's own key cache (the OpenIdMetadata that ChannelValidation uses
  // for this metadata URL) so the JWKS is fetched once, before the first request,
  // rather than by every request that arrives while the first fetch is in flight.
  try {
    await JwtTokenExtractor.getOrAddOpenIdMetadata(openIdMetadataUrl).getKey('');
  } catch (e) {
    console.error(`botbuilder.js: could not fetch the signing keys yet (${e.message}); will on first use`);
  }
  // Node closes idle keep-alive connections after 5 s; the load generator keeps its
  // pool between phases (as with Waiver, whose server has no idle timeout).
  server.keepAliveTimeout = 75000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  console.error(`botbuilder.js: listening on http://${host}:${port}`);
})().catch((e) => {
  console.error(`botbuilder.js: ${e.stack || e}`);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
