// edgeperso.js: the storefront side of edgeperso, one dependency-free ES module.
//
//   import { start } from "/edgeperso.js";
//   start({ consent: true, product: "22086" });
//
// It keeps the visit's state in the browser (with consent only), asks the edge for the page's
// slots, fills the elements marked `data-edgeperso-slot` from the shop's <template>s, and
// reports impressions and clicks with the decision they answer. Whatever fails or is late, the
// shop's default content stays where it is and nothing is thrown at the page.
// docs/storefront.md is the reference.

const SESSION = "edgeperso.session"; // sessionStorage: this visit
const VISITOR = "edgeperso.visitor"; // localStorage: across visits
const OUTBOX = "edgeperso.outbox"; // sessionStorage: events not yet acknowledged
const COOKIE = "edgeperso"; // what the gateway reads to fill slots before the page arrives
const VISIT_GAP_MS = 30 * 60 * 1000; // as the build cuts sessions (events.session_gap_minutes)
const KEEP_EVENTS = 50; // of the visit's events, the newest, sent with each request
const SEEN_RATIO = 0.5; // an item counts as seen when half of it was visible...
const SEEN_MS = 1000; // ...for a second
const FLUSH_MS = 2000;
const MAX_BATCH = 100;

export const DEFAULTS = {
  endpoint: "", // prefix of /v1/recommend and /v1/events (the gateway on the shop's domain)
  consent: false, // a boolean, or a function asked at each step
  userId: null, // a logged-in customer
  product: null, // the item this page is about: a view, with its visible dwell
  k: 8,
  fields: ["title", "price"], // display fields the templates may use, with item_id and rank
  timeoutMs: 1000, // past this, the default content stays
  refreshAtDwellSeconds: [31], // ask again once the product was looked at this long
  context: {}, // device, country, local_hour... (the gateway adds what the CDN knows)
};

export function start(options = {}) {
  const perso = new Storefront({ ...DEFAULTS, ...options });
  perso.ready = perso.begin().catch(() => {}); // nothing reaches the page's console
  return perso;
}

export class Storefront {
  constructor(options) {
    this.options = options;
    this.answer = null;
    this.shownBy = new WeakMap(); // rendered element -> what its impression reports
    this.seen = new WeakSet();
    this.timers = new WeakMap(); // element -> its pending impression
  }

  consented() {
    const c = this.options.consent;
    return Boolean(typeof c === "function" ? c() : c);
  }

  async begin() {
    if (this.consented()) {
      this.visit = beginVisit(Date.now()); // saved, and its cookie written
      this.watchDwell();
      addEventListener("pagehide", () => this.leave());
      this.flushTimer = setInterval(() => this.flush(), FLUSH_MS);
      this.flush();
    } else {
      clearState();
    }
    document.addEventListener("click", (e) => this.clicked(e), true);
    if (!this.adoptEdgeAnswer()) await this.refresh();
  }

  /** The gateway filled the slots before the page arrived (worker/inject.js) and left its
   * answer in the page: its items report impressions as if filled here, and the page is not
   * asked again until something changes. */
  adoptEdgeAnswer() {
    const data = document.getElementById("edgeperso-answer");
    // Asked for this visit, or without consent by a page without it; else asked again here
    // (the visitor just consented, or the gateway did not have the cookie yet).
    const forVisit = this.consented() ? this.visit.id : "";
    if (!data || data.dataset.session !== forVisit) return false;
    let answer = null;
    try {
      answer = JSON.parse(data.textContent);
    } catch {
      return false;
    }
    if (!answer || !Array.isArray(answer.items)) return false;
    this.answer = answer;
    for (const el of document.querySelectorAll('[data-edgeperso-filled="edge"]')) {
      const shown = slotContent(slotOf(el), answer);
      if (shown) this.watch(el, shown);
    }
    return true;
  }

  // ------------------------------------------------------------------ asking the edge
  request() {
    const o = this.options;
    const k = Math.max(o.k, ...slotsOf("items").map((el) => +el.dataset.edgepersoK || 0));
    // The page's clock: the session's event times were taken on it (see docs/api.md).
    const now = new Date().toISOString();
    const context = { ...o.context, page: location.pathname.slice(0, 256), now };
    const bandits = slotsOf("slot").map((el) => el.dataset.edgepersoName);
    return buildRequest(this.consented() ? this.visit : null, {
      userId: o.userId,
      context,
      k: Math.min(k, 100),
      slots: bandits,
      fields: o.fields,
      dwell: this.product ? this.dwellMs() : 0,
      product: o.product,
    });
  }

  async refresh() {
    const answer = await post(this.url("/v1/recommend"), this.request(), this.options.timeoutMs);
    // Late, failed, not ours, or fallback content (the edge could not answer for this visitor):
    // the shop's default content stays, as the shop chose it.
    if (!answer || !Array.isArray(answer.items) || answer.fallback) return;
    this.answer = answer;
    render(this, answer);
  }

  url(path) {
    return this.options.endpoint.replace(/\/$/, "") + path;
  }

  // ------------------------------------------------------------------ what the shopper does
  /** A shop event: "add_to_cart", "remove_from_cart", "purchase" (price and qty optional). */
  track(type, itemId, extra = {}) {
    if (!this.consented() || !itemId) return;
    const ts = new Date().toISOString();
    const id = String(itemId);
    this.visit.events.push({ type, item_id: id, ts });
    if (type === "add_to_cart") this.visit.cart = [...new Set([...this.visit.cart, id])];
    if (type === "remove_from_cart") this.visit.cart = this.visit.cart.filter((i) => i !== id);
    if (type === "purchase") {
      this.visit.cart = [];
      this.visit.visitsSincePurchase = 0;
    }
    saveVisit(this.visit);
    this.send({ type, item_id: id, ts, ...extra });
    return this.refresh();
  }

  watchDwell() {
    const item = this.options.product;
    if (!item) return;
    this.product = { item, visibleMs: 0, since: visible() ? Date.now() : null };
    this.visit.events.push({ type: "view", item_id: String(item), ts: new Date().toISOString() });
    saveVisit(this.visit);
    document.addEventListener("visibilitychange", () => {
      const p = this.product;
      if (visible()) p.since = Date.now();
      else if (p.since !== null) {
        p.visibleMs += Date.now() - p.since;
        p.since = null;
        this.saveDwell();
      }
    });
    for (const seconds of this.options.refreshAtDwellSeconds) this.askAtDwell(seconds * 1000);
  }

  dwellMs() {
    const p = this.product;
    return Math.round(p.visibleMs + (p.since === null ? 0 : Date.now() - p.since));
  }

  askAtDwell(ms) {
    // Checked each second: hidden time does not count, so a timer alone cannot say when.
    const check = setInterval(() => {
      if (this.dwellMs() < ms) return;
      clearInterval(check);
      this.saveDwell();
      this.refresh();
    }, 1000);
  }

  saveDwell() {
    const view = this.visit.events.findLast(
      (e) => e.type === "view" && e.item_id === this.product.item,
    );
    if (view) view.dwell_ms = Math.min(this.dwellMs(), 86_400_000);
    saveVisit(this.visit);
  }

  leave() {
    if (this.product) {
      this.saveDwell();
      this.send({ type: "view", item_id: this.product.item, dwell_ms: this.dwellMs() });
    }
    this.flush(true);
  }

  // ------------------------------------------------------------------ impressions and clicks
  /** A slot now shows `shown` (`slotContent`), filled here or at the edge: its items report
   * their impressions and clicks, and the rule it shows counts as shown this visit. */
  watch(el, shown) {
    for (const item of el.querySelectorAll("[data-edgeperso-item]")) {
      this.shown(item, { ...shown.what, item_id: item.dataset.edgepersoItem.slice(0, 128) });
    }
    if (shown.rule && this.consented() && !this.visit.rulesShown.includes(shown.rule)) {
      this.visit.rulesShown.push(shown.rule);
      saveVisit(this.visit);
    }
  }

  shown(element, what) {
    this.shownBy.set(element, what);
    if (!this.consented() || typeof IntersectionObserver === "undefined") return;
    this.observer ||= new IntersectionObserver((entries) => this.visibility(entries), {
      threshold: [0, SEEN_RATIO],
    });
    this.observer.observe(element);
  }

  visibility(entries) {
    for (const entry of entries) {
      const el = entry.target;
      if (entry.intersectionRatio >= SEEN_RATIO && !this.seen.has(el)) {
        this.timers.set(
          el,
          setTimeout(() => this.impression(el), SEEN_MS),
        );
      } else {
        clearTimeout(this.timers.get(el));
      }
    }
  }

  impression(el) {
    if (this.seen.has(el) || !el.isConnected) return;
    this.seen.add(el);
    this.observer.unobserve(el);
    this.send({ type: "impression", ...this.shownBy.get(el) });
  }

  clicked(event) {
    if (!this.consented()) return;
    const el = event.target.closest && event.target.closest("[data-edgeperso-item]");
    const what = el && this.shownBy.get(el);
    if (!what) return;
    this.send({ type: "click", ...what });
    this.flush(true); // a click usually leaves the page
  }

  // ------------------------------------------------------------------ sending events
  send(event) {
    if (!this.consented()) return;
    const record = {
      event_id: randomId(),
      user_id: String(this.options.userId || this.visit.visitor),
      session_id: this.visit.id,
      ts: new Date().toISOString(),
      ...event,
    };
    const box = readOutbox();
    box.push(record);
    writeOutbox(box);
  }

  /** Send what waits, in batches; `leaving`: the page is going, so use a beacon. */
  async flush(leaving = false) {
    const box = readOutbox();
    if (!box.length || this.sending) return;
    const batch = box.slice(0, MAX_BATCH);
    const body = JSON.stringify({ events: batch });
    if (leaving && navigator.sendBeacon) {
      const queued = navigator.sendBeacon(
        this.url("/v1/events"),
        new Blob([body], { type: "application/json" }),
      );
      // A beacon has no answer: the events leave the outbox once the browser took them; the
      // build drops the copy a retry may add (event_id).
      if (queued) writeOutbox(readOutbox().slice(batch.length));
      return;
    }
    this.sending = true;
    try {
      const response = await fetch(this.url("/v1/events"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        keepalive: true,
      });
      // 2xx: stored. 4xx but 408 and 429: the batch will never be accepted, so it is dropped
      // rather than retried forever. Anything else waits for the next flush.
      const s = response.status;
      if (response.ok || (s >= 400 && s < 500 && s !== 408 && s !== 429)) {
        writeOutbox(readOutbox().slice(batch.length));
      }
    } catch {
      // offline or the edge is away: the outbox keeps them for the next try
    } finally {
      this.sending = false;
    }
  }
}

// ------------------------------------------------------------------ the request (shared vectors)
/** The /v1/recommend body for a visit (null: no consent, context only). */
export function buildRequest(
  visit,
  { userId, context, k, slots = [], fields = [], dwell = 0, product },
) {
  const body = { k, consent: Boolean(visit), context: { ...context } };
  if (slots.length) body.slots = slots;
  if (fields.length) body.fields = fields;
  if (!visit) return body;
  // A logged-in customer's id, else the browser's own stable one: user experiments stay sticky
  // across visits, and the next build learns this visitor's history.
  body.user_id = String(userId || visit.visitor);
  body.session_id = visit.id;
  const events = visit.events.slice(-KEEP_EVENTS).map((e) => ({ ...e }));
  if (product && dwell) {
    const view = events.findLast((e) => e.type === "view" && e.item_id === String(product));
    if (view) view.dwell_ms = Math.min(dwell, 86_400_000);
  }
  body.session = { events, rules_shown: visit.rulesShown.slice(-100) };
  body.context.cart = visit.cart.slice(-200);
  body.context.visits = Math.max(1, visit.visitsSincePurchase);
  if (product) body.exclude = [String(product)];
  return body;
}

/** The experiment bucket of a unit, as the edge computes it (edge/experiments.py). */
export async function bucket(key, unit) {
  const data = new TextEncoder().encode(`${key}:${unit}`);
  const digest = new DataView(await crypto.subtle.digest("SHA-256", data));
  return digest.getUint32(0) / 2 ** 32;
}

/** The variant a unit gets: the first whose cumulative weight over the total passes its bucket. */
export async function assign(experiment, unit) {
  const b = await bucket(experiment.key, unit);
  const total = experiment.variants.reduce((sum, v) => sum + v.weight, 0);
  let cumulative = 0;
  for (const v of experiment.variants) {
    cumulative += v.weight;
    if (b < cumulative / total) return v.name;
  }
  return experiment.variants[experiment.variants.length - 1].name;
}

// ------------------------------------------------------------------ rendering
// What each slot shows is decided by `slotContent` and written by `renderRecord`, pure
// functions the gateway Worker runs too (worker/inject.js): a slot filled at the edge before the
// page arrives holds what this script would have put there.

/** The slots of a page: each element marked data-edgeperso-slot, as `slotContent` reads it. */
function slotsOf(kind) {
  return [...document.querySelectorAll(`[data-edgeperso-slot="${kind}"]`)];
}

function slotOf(el) {
  const d = el.dataset;
  return {
    kind: d.edgepersoSlot,
    name: d.edgepersoName,
    k: +d.edgepersoK || 0,
    template: d.edgepersoTemplate,
  };
}

/** What `slot` ({kind, name, k}) shows from `answer`, or null when the answer has nothing for
 * it (the default content stays): the records to render, the template variants to look for in
 * order (a segment, a content block, an arm; null: the slot's plain template), what each shown
 * element's impression and click report, and the rule it shows, if any. */
export function slotContent(slot, answer) {
  const decision = answer.decision_id ? { decision_id: answer.decision_id } : {};
  const details = answer.details || {};
  const item = (id, i, extra = {}) => ({ ...details[id], ...extra, item_id: id, rank: i + 1 });
  const fired = answer.rules_fired || [];
  const plain = (records, slotName, rule = null, variants = [null]) =>
    records.length ? { records, variants, what: { slot: slotName, ...decision }, rule } : null;
  switch (slot.kind) {
    case "items": {
      const k = slot.k || answer.items.length;
      const records = answer.items.slice(0, k).map((it, i) => item(it.item_id, i, it));
      return plain(records, slot.name || "items");
    }
    case "accessories": {
      const rule = fired.find((r) => !r.offer && r.items && r.items.length);
      return rule
        ? plain(
            rule.items.map((id, i) => item(id, i)),
            "accessories",
            rule.rule,
          )
        : null;
    }
    case "offer": {
      const rule = fired.find((r) => r.offer);
      if (!rule) return null;
      const cart = rule.items.map((id, i) => item(id, i));
      const record = {
        ...rule.offer,
        rule: rule.rule,
        why: rule.why,
        items: cart,
        item_id: rule.rule,
      };
      return plain([record], "offer", rule.rule, [rule.rule, null]);
    }
    case "content": {
      // A template for this answer's segment, else for a rule's content block; else nothing.
      const blocks = fired.filter((r) => r.content && r.content.block);
      const variants = [answer.segment, ...blocks.map((r) => r.content.block)].filter(Boolean);
      const record = { ...answer.content, segment: answer.segment || "", item_id: "content" };
      const rule = blocks.length ? blocks[0].rule : null;
      return variants.length ? plain([record], "content", rule, variants) : null;
    }
    case "slot": {
      const choice = slot.name && answer.slots && answer.slots[slot.name];
      if (!choice) return null;
      const record = { ...choice.content, arm: choice.arm, item_id: choice.arm };
      const what = {
        slot: slot.name,
        variant: choice.arm,
        propensity: choice.propensity,
        ...decision,
      };
      return { records: [record], variants: [choice.arm, null], what, rule: null };
    }
    default:
      return null;
  }
}

/** One record's HTML from a template's: each {{field}} filled (HTML-escaped), and the first
 * element marked with the record's item id (data-edgeperso-item), which impressions report. */
export function renderRecord(templateHtml, record) {
  const html = templateHtml.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (_, key) =>
    escapeHtml(field(record, key)),
  );
  const mark = ` data-edgeperso-item="${escapeHtml(String(record.item_id))}"`;
  return html.replace(/^(\s*<[a-zA-Z][\w-]*)/, `$1${mark}`);
}

function render(perso, answer) {
  for (const el of document.querySelectorAll("[data-edgeperso-slot]")) {
    const shown = slotContent(slotOf(el), answer);
    const template = shown && shown.variants.map((v) => findTemplate(el, v)).find(Boolean);
    if (!template) continue;
    el.innerHTML = shown.records.map((r) => renderRecord(template.innerHTML, r)).join("");
    el.dataset.edgepersoFilled = "browser";
    perso.watch(el, shown);
  }
}

/** The template for a slot (data-edgeperso-template names it) and a variant of it
 * (data-edgeperso-for: a segment, a content block, an arm); null: the one without a variant. */
function findTemplate(slot, variant) {
  const name = cssEscape(slot.dataset.edgepersoTemplate || "");
  for (const t of document.querySelectorAll(`template[data-edgeperso-template="${name}"]`)) {
    if ((t.dataset.edgepersoFor || null) === variant) return t;
  }
  return null;
}

function field(record, key) {
  const value = key.split(".").reduce((v, k) => (v == null ? v : v[k]), record);
  if (value == null) return "";
  return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(2) : String(value);
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function cssEscape(text) {
  return String(text).replace(/["\\]/g, "\\$&");
}

// ------------------------------------------------------------------ the visit's state
function beginVisit(now) {
  const visitor = read(localStorage, VISITOR) || { id: randomId(), visits: 0, sincePurchase: 0 };
  let visit = read(sessionStorage, SESSION);
  if (!visit || now - visit.lastSeen > VISIT_GAP_MS) {
    visitor.visits += 1;
    visitor.sincePurchase += 1;
    visit = { id: randomId(), events: [], cart: visit ? visit.cart : [], rulesShown: [] };
  }
  visit.lastSeen = now;
  visit.visitor = visitor.id;
  visit.visitsSincePurchase = visitor.sincePurchase;
  write(localStorage, VISITOR, visitor);
  saveVisit(visit);
  return visit;
}

function saveVisit(visit) {
  visit.events = visit.events.slice(-KEEP_EVENTS);
  write(sessionStorage, SESSION, visit);
  const visitor = read(localStorage, VISITOR);
  if (visitor && visitor.sincePurchase !== visit.visitsSincePurchase) {
    write(localStorage, VISITOR, { ...visitor, sincePurchase: visit.visitsSincePurchase });
  }
  writeCookie(visit);
}

/** What the gateway needs to ask for this visitor before the page arrives: ids, visits, cart
 * and the last few items, as compact JSON in a first-party cookie (never without consent). */
function writeCookie(visit) {
  const state = {
    s: visit.id,
    u: visit.visitor,
    v: visit.visitsSincePurchase,
    c: visit.cart.slice(-10),
    e: visit.events.slice(-8).map((e) => [e.type, e.item_id, e.ts, e.dwell_ms || 0]),
    r: visit.rulesShown.slice(-10),
  };
  document.cookie = `${COOKIE}=${encodeURIComponent(JSON.stringify(state))}; path=/; SameSite=Lax`;
}

function clearState() {
  // Consent withdrawn or never given: nothing of ours stays behind.
  for (const [store, key] of [
    [sessionStorage, SESSION],
    [sessionStorage, OUTBOX],
    [localStorage, VISITOR],
  ]) {
    try {
      if (store.getItem(key) !== null) store.removeItem(key);
    } catch {
      // storage disabled: nothing to clear
    }
  }
  if (document.cookie.includes(`${COOKIE}=`)) {
    document.cookie = `${COOKIE}=; path=/; max-age=0; SameSite=Lax`;
  }
}

function readOutbox() {
  return read(sessionStorage, OUTBOX) || [];
}

function writeOutbox(events) {
  write(sessionStorage, OUTBOX, events.slice(-1000));
}

function read(store, key) {
  try {
    return JSON.parse(store.getItem(key));
  } catch {
    return null; // storage disabled or the value damaged: start again
  }
}

function write(store, key, value) {
  try {
    store.setItem(key, JSON.stringify(value));
  } catch {
    // full or disabled: the visit goes on without it
  }
}

function visible() {
  return document.visibilityState === "visible";
}

function randomId() {
  return crypto.randomUUID
    ? crypto.randomUUID()
    : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

async function post(url, body, timeoutMs) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: abort.signal,
    });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}
