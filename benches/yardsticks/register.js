// The yardsticks' in-memory register: what Waiver keeps in its database, kept in a Map
// and an array instead (no durability). Both yardsticks use it for the "Complete" click:
// look the request up, check that it awaits completeness review at the version the
// card showed, move it to in_assessment, append to the audit trail.
//
// The load generator clicks requests 1..N that a yardstick has never seen: a request
// is created, awaiting review at version 1, the first time it is named.

'use strict';

// Waiver's sample request (src/fakes/testkit.rs `sample_form`), what its cards show.
const SAMPLE = {
  title: 'Use an LLM coding assistant',
  requester: 'James Carter',
  businessOwner: 'Marcus Webb',
  policy: 'Acceptable Use of Generative AI (v2026.2)',
  exceptionType: 'Tool adoption',
  aiSystem: 'CodeHelper Pro',
  department: 'Engineering',
  data: 'Internal',
  regions: 'United States',
  scope: 'Engineering; 12 engineers; ingestion repositories',
  justification: 'Speeds up test writing for the ingestion team.',
  controls: 'No customer data in prompts; secrets scanner on.',
};

class Register {
  constructor() {
    /** request number → { id, state, version, content, filedAt, reviews: [] } */
    this.requests = new Map();
    /** { at, request, actor, action, from, to } */
    this.audit = [];
    this.filed = 0;
  }

  /** The request numbered `r`, created awaiting review on first sight. */
  get(r) {
    let request = this.requests.get(r);
    if (request === undefined) {
      const today = new Date();
      const end = new Date(today);
      end.setUTCMonth(end.getUTCMonth() + 6);
      request = {
        id: r,
        state: 'submitted',
        version: 1,
        content: { ...SAMPLE, start: day(today), end: day(end) },
        filedAt: today,
        reviews: [],
      };
      this.requests.set(r, request);
    }
    return request;
  }

  /**
   * `actor` marks request `r` complete from a card showing version `v`. Returns the
   * request moved to in_assessment, or { refused } when it no longer awaits review.
   */
  complete(r, v, actor) {
    if (!Number.isSafeInteger(r) || r <= 0) {
      return { refused: 'no such request' };
    }
    const request = this.get(r);
    if (request.state !== 'submitted') {
      return { refused: `AIX-${pad(r)} is no longer awaiting completeness review.` };
    }
    if (v !== undefined && v !== request.version) {
      return { refused: `This card shows version ${v}; AIX-${pad(r)} is at version ${request.version}.` };
    }
    const at = new Date();
    request.state = 'in_assessment';
    request.reviews.push({ version: request.version, reviewer: actor, verdict: 'complete', at });
    this.audit.push({ at, request: r, actor, action: 'mark_complete', from: 'submitted', to: 'in_assessment' });
    return { request };
  }

  /** A submitted intake form: a new request, awaiting review. */
  file(actor, values) {
    this.filed += 1;
    let r = this.requests.size + 1;
    while (this.requests.has(r)) r += 1;
    const request = this.get(r);
    request.content = { ...request.content, ...values, requester: actor };
    this.audit.push({ at: new Date(), request: r, actor, action: 'submit', from: null, to: 'submitted' });
    return request;
  }

  stats() {
    let inAssessment = 0;
    for (const request of this.requests.values()) {
      if (request.state === 'in_assessment') inAssessment += 1;
    }
    return { requests: this.requests.size, in_assessment: inAssessment, audit: this.audit.length, filed: this.filed };
  }
}

function pad(r) {
  return String(r).padStart(4, '0');
}

function day(d) {
  return d.toISOString().slice(0, 10);
}

/**
 * The facts of a request as label → value, in the order Waiver's cards list them
 * (src/chat/plan.rs `request_sections`).
 */
function facts(request) {
  const c = request.content;
  const days = Math.round((Date.parse(c.end) - Date.parse(c.start)) / 86400000);
  return [
    ['Requester', c.requester],
    ['Business owner', c.businessOwner],
    ['Policy', c.policy],
    ['Exception type', c.exceptionType],
    ['AI system', c.aiSystem],
    ['Department', c.department],
    ['Data', c.data],
    ['Regions', c.regions],
    ['Requested period', `${c.start} to ${c.end} (${days} days)`],
    ['Scope', c.scope],
  ];
}

module.exports = { Register, facts, pad, day };
