#!/usr/bin/env node
// Yardstick: a minimal Bolt for JavaScript app doing Waiver's Slack hot paths with
// in-memory state (DESIGN §7), for the load generator in benches/ to drive exactly as
// it drives `waiver serve`.
//
//   POST /slack/commands      `/ai-exception`: ack, then views.open (the intake modal)
//   POST /slack/interactions  block action `complete`: ack, then in memory (request
//                             submitted → in_assessment, audit entry), then chat.update
//                             of the card; view submission `intake`: ack, then store
//   GET  /readyz              200 once listening
//   GET  /yardstick/stats     JSON counts (requests, in_assessment, audit, API calls)
//
// Bolt's own HTTPReceiver verifies Slack's signature (v0 HMAC-SHA256 over
// `v0:{ts}:{body}`, timestamp within 5 minutes) and answers 401 when it fails. Its
// ack() with no argument answers 200 with an empty body — Waiver's acknowledgement.
//
// Environment:
//   PORT                  port to listen on (HOST, default 127.0.0.1)
//   SLACK_SIGNING_SECRET  the signing secret
//   SLACK_BOT_TOKEN       the bot token (xoxb-…)
//   SLACK_API_URL         Slack Web API base, ending in /api/ (Waiver's fake:
//                         http://127.0.0.1:PORT/api/)
//   LOG_LEVEL             Bolt's log level (default warn)

'use strict';

const { App, LogLevel } = require('@slack/bolt');
const { Register, facts, pad } = require('./register');

function required(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`bolt.js: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const port = Number(required('PORT'));
const host = process.env.HOST || '127.0.0.1';
const signingSecret = required('SLACK_SIGNING_SECRET');
const token = required('SLACK_BOT_TOKEN');
let slackApiUrl = required('SLACK_API_URL');
if (!slackApiUrl.endsWith('/')) slackApiUrl += '/';
const logLevel = LogLevel[(process.env.LOG_LEVEL || 'warn').toUpperCase()] || LogLevel.WARN;

const register = new Register();
const calls = { views_open: 0, chat_update: 0, api_errors: 0 };

// ---------------------------------------------------------------------------------
// The intake modal, shaped as Waiver's (src/interact/form.rs `intake`, rendered by
// src/chat/slack/modals.rs): 15 inputs, block id = field id, action id `value`,
// callback id `intake`, the form's metadata in private_metadata.

const text = (t) => ({ type: 'plain_text', text: t });
const option = ([value, label]) => ({ text: text(label), value });

const POLICIES = [
  ['aiup', 'Acceptable Use of Generative AI (v2026.2)'],
  ['personal-data-ai', 'Personal Data in AI Systems (v3.1)'],
  ['health-data-ai', 'Protected Health Information and AI (v1.4)'],
  ['model-risk', 'Model Risk Management (v2.0)'],
  ['third-party-ai', 'Third-Party AI Services (v1.2)'],
];
const EXCEPTION_TYPES = [
  ['tool_adoption', 'Tool adoption'],
  ['data_handling', 'Data handling'],
  ['model_deployment', 'Model deployment'],
  ['automated_decision', 'Automated decisions about people'],
  ['other', 'Other'],
];
const DEPARTMENTS = [
  ['engineering', 'Engineering'],
  ['data-science', 'Data science'],
  ['product', 'Product'],
  ['marketing', 'Marketing'],
  ['sales', 'Sales'],
  ['customer-support', 'Customer support'],
  ['finance', 'Finance'],
  ['people', 'People (HR)'],
  ['research', 'Clinical research'],
];
const DATA_CATEGORIES = [
  ['public', 'Public'],
  ['internal', 'Internal'],
  ['confidential', 'Confidential'],
  ['source_code', 'Source code'],
  ['pii', 'Personal data (PII)'],
  ['phi', 'Health data (PHI)'],
  ['biometric', 'Biometric data'],
  ['financial', 'Financial reporting data'],
];
const REGIONS = [
  ['eu', 'European Union'],
  ['uk', 'United Kingdom'],
  ['us', 'United States'],
  ['canada', 'Canada'],
  ['apac', 'Asia-Pacific'],
];

function input(id, label, element, { optional = false, hint } = {}) {
  const block = { type: 'input', block_id: id, label: text(label), element: { ...element, action_id: 'value' } };
  if (optional) block.optional = true;
  if (hint) block.hint = text(hint);
  return block;
}
const plainInput = (max, multiline = false) => ({ type: 'plain_text_input', multiline, max_length: max });
const select = (options) => ({ type: 'static_select', options: options.map(option) });
const multi = (options) => ({ type: 'multi_static_select', options: options.map(option) });

const INTAKE_MODAL = {
  type: 'modal',
  callback_id: 'intake',
  private_metadata: '{}',
  title: text('AI policy exception'),
  submit: text('Submit'),
  close: text('Cancel'),
  blocks: [
    input('title', 'Title', plainInput(150)),
    input('policy', 'Policy', select(POLICIES), { hint: 'The policy you need an exception from.' }),
    input('exception_type', 'Exception type', select(EXCEPTION_TYPES)),
    input('ai_system', 'AI system or model', plainInput(150)),
    input('justification', 'Business justification', plainInput(3000, true)),
    input('scope_departments', 'Teams affected', multi(DEPARTMENTS)),
    input('scope_users', 'Users', plainInput(150), { hint: 'Who will use it, and how many.' }),
    input('scope_systems', 'Systems', plainInput(150), { optional: true }),
    input('data_categories', 'Data categories', multi(DATA_CATEGORIES)),
    input('regions', 'Regions', multi(REGIONS)),
    input('department', 'Your department', select(DEPARTMENTS)),
    input('start', 'Requested start', { type: 'datepicker' }),
    input('end', 'Requested end', { type: 'datepicker' }),
    input('controls', 'Proposed compensating controls', plainInput(3000, true)),
    input('business_owner', 'Business owner', { type: 'users_select' }),
  ],
};

// ---------------------------------------------------------------------------------
// The completeness card once marked complete, shaped as Waiver's (src/chat/plan.rs
// `card_message` → src/chat/slack/render.rs `blocks`).

const escape = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const mrkdwn = (t) => ({ type: 'mrkdwn', text: t });

function completedCard(request, actor) {
  const c = request.content;
  const reference = `AIX-${pad(request.id)}`;
  return {
    text: `${reference} · Completeness review: Marked complete by ${escape(actor)}.`,
    blocks: [
      { type: 'header', text: text(`${reference} · ${c.title}`) },
      { type: 'section', fields: facts(request).map(([l, v]) => mrkdwn(`*${escape(l)}*\n${escape(v)}`)) },
      { type: 'section', text: mrkdwn(`*Business justification*\n${escape(c.justification)}`) },
      { type: 'section', text: mrkdwn(`*Compensating controls*\n${escape(c.controls)}`) },
      {
        type: 'context',
        elements: [
          mrkdwn(`Completeness review · version ${request.version} · filed ${request.filedAt.toISOString().slice(0, 10)} · governance yardstk`),
        ],
      },
      { type: 'context', elements: [mrkdwn(`Marked complete by ${escape(actor)}.`)] },
    ],
  };
}

// ---------------------------------------------------------------------------------
// The app.

const app = new App({
  signingSecret,
  token,
  // No auth.test, at start or on the first request: the bot's ids are given.
  tokenVerificationEnabled: false,
  botId: process.env.SLACK_BOT_ID || 'B0WAIVER',
  botUserId: process.env.SLACK_BOT_USER_ID || 'U0WAIVERBOT',
  endpoints: ['/slack/commands', '/slack/interactions'],
  customRoutes: [
    {
      path: '/readyz',
      method: ['GET'],
      handler: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
      },
    },
    {
      path: '/yardstick/stats',
      method: ['GET'],
      handler: (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ...register.stats(), ...calls }));
      },
    },
  ],
  clientOptions: { slackApiUrl },
  logLevel,
});

app.command('/ai-exception', async ({ ack, body, client, logger }) => {
  await ack();
  try {
    await client.views.open({ trigger_id: body.trigger_id, view: INTAKE_MODAL });
    calls.views_open += 1;
  } catch (e) {
    calls.api_errors += 1;
    logger.error(`views.open failed: ${e.message}`);
  }
});

app.action('complete', async ({ ack, body, action, client, logger }) => {
  await ack();
  let value;
  try {
    value = JSON.parse(action.value);
  } catch {
    logger.warn(`a complete button with an unreadable value: ${action.value}`);
    return;
  }
  const actor = body.user.id;
  const done = register.complete(Number(value.r), value.v, actor);
  if (done.refused) {
    logger.info(done.refused);
    return;
  }
  const channel = body.channel?.id ?? body.container?.channel_id;
  const ts = body.message?.ts ?? body.container?.message_ts;
  try {
    await client.chat.update({ channel, ts, ...completedCard(done.request, actor) });
    calls.chat_update += 1;
  } catch (e) {
    calls.api_errors += 1;
    logger.error(`chat.update failed: ${e.message}`);
  }
});

app.view('intake', async ({ ack, body, view }) => {
  await ack();
  const values = {};
  for (const [field, actions] of Object.entries(view.state?.values ?? {})) {
    const v = actions.value;
    if (!v) continue;
    values[field] =
      v.value ?? v.selected_date ?? v.selected_user ?? v.selected_option?.value ?? v.selected_options?.map((o) => o.value);
  }
  register.file(body.user.id, values);
});

app.error(async (e) => {
  console.error(`bolt.js: ${e.message}`);
});

(async () => {
  const server = await app.start({ port, host });
  // Node closes idle keep-alive connections after 5 s; the load generator keeps its
  // pool between phases (as with Waiver, whose server has no idle timeout).
  server.keepAliveTimeout = 75000;
  console.error(`bolt.js: listening on http://${host}:${port}`);
})().catch((e) => {
  console.error(`bolt.js: ${e.stack || e}`);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
