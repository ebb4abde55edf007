// Edge-side injection: the gateway in front of the shop's pages fills their slots before the page
// reaches the browser, so personalized content shows without flicker and without JavaScript.
// The slots, templates and the rules of what each shows are the storefront script's own
// (storefront/edgeperso.js: `slotContent`, `renderRecord`, `buildRequest`), so a slot filled here
// holds what the script would have put there; the script then takes over for later updates.
//
// A page passes through untouched when it is not HTML, not a 200, larger than MAX_PAGE_BYTES, has
// no slot, or when the app does not answer within its budget. What the visitor did comes from
// the first-party cookie the script keeps with consent (COOKIE); without it the answer uses the
// context only.

import { buildRequest, DEFAULTS, renderRecord, slotContent } from "../storefront/edgeperso.js";

export const COOKIE = "edgeperso";
export const MAX_PAGE_BYTES = 2 * 1024 * 1024; // a larger page streams through untouched
const MAX_COOKIE_EVENTS = 20;
const LABEL = /^[^\u0000-\u001f\u007f]{1,128}$/;

// ------------------------------------------------------------------ reading the page
const TEMPLATE = /<template\b([^>]*)>([\s\S]*?)<\/template\s*>/gi;
const SLOT = /<[a-zA-Z][\w-]*\b[^>]*\bdata-edgeperso-slot\s*=[^>]*>/gi;
const META = /<meta\b[^>]*>/gi;
const ATTRIBUTE = /([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;

export function attributesOf(tag) {
  const out = {};
  for (const [, name, double, single] of tag.matchAll(ATTRIBUTE)) {
    out[name.toLowerCase()] = decodeEntities(double ?? single);
  }
  return out;
}

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (whole, code) => {
    const named = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }[code.toLowerCase()];
    if (named) return named;
    const n = code[1] === "x" || code[1] === "X" ? parseInt(code.slice(2), 16) : +code.slice(1);
    return Number.isFinite(n) && n > 0 && n < 0x110000 ? String.fromCodePoint(n) : whole;
  });
}

/** What a page asks of edgeperso: its slots (as `slotContent` reads them), its templates by
 * name and variant, and the product and customer its <meta name="edgeperso:..."> tags name. */
export function readPage(html) {
  const templates = new Map();
  for (const [, attrs, inner] of html.matchAll(TEMPLATE)) {
    const a = attributesOf(attrs);
    const name = a["data-edgeperso-template"];
    if (name === undefined) continue;
    if (!templates.has(name)) templates.set(name, new Map());
    templates.get(name).set(a["data-edgeperso-for"] ?? null, inner);
  }
  const slots = [];
  for (const [tag] of html.matchAll(SLOT)) slots.push(slotOf(attributesOf(tag)));
  const meta = {};
  for (const [tag] of html.matchAll(META)) {
    const a = attributesOf(tag);
    if (a.name?.startsWith("edgeperso:")) meta[a.name.slice(10)] = a.content ?? "";
  }
  return { slots, templates, product: meta.product || null, user: meta.user || null };
}

function slotOf(a) {
  return {
    kind: a["data-edgeperso-slot"],
    name: a["data-edgeperso-name"],
    k: +a["data-edgeperso-k"] || 0,
    template: a["data-edgeperso-template"],
  };
}

// ------------------------------------------------------------------ the visitor's cookie
export function cookieValue(header, name) {
  for (const part of (header ?? "").split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return rest.join("=");
  }
  return null;
}

const isLabel = (v) => typeof v === "string" && LABEL.test(v);

/** The visit the script keeps (storefront/edgeperso.js `writeCookie`), from its cookie; null
 * when there is none or it is not one the script wrote (the app then gets the context only). */
export function visitFromCookie(header) {
  let state;
  try {
    state = JSON.parse(decodeURIComponent(cookieValue(header, COOKIE) ?? ""));
  } catch {
    return null;
  }
  if (!state || !isLabel(state.s) || !isLabel(state.u)) return null;
  const list = (v, max) => (Array.isArray(v) ? v.slice(-max) : []);
  const events = list(state.e, MAX_COOKIE_EVENTS)
    .filter((e) => Array.isArray(e) && isLabel(e[0]) && isLabel(e[1]))
    .map(([type, item_id, ts, dwell]) => ({
      type,
      item_id,
      ...(typeof ts === "string" && ts.length <= 40 ? { ts } : {}),
      ...(Number.isInteger(dwell) && dwell > 0 && dwell <= 86_400_000 ? { dwell_ms: dwell } : {}),
    }));
  const visits = Number.isInteger(state.v) && state.v >= 1 ? Math.min(state.v, 100_000) : 1;
  return {
    id: state.s,
    visitor: state.u,
    visitsSincePurchase: visits,
    cart: list(state.c, 200).filter(isLabel),
    rulesShown: list(state.r, 100).filter(isLabel),
    events,
  };
}

/** The visitor consented: the script's cookie is there and, when CONSENT_COOKIE names the
 * shop's own consent cookie ("name=value"), that one says yes too. */
export function consentedVisit(request, env) {
  const header = request.headers.get("cookie");
  const wanted = env.CONSENT_COOKIE;
  if (wanted) {
    const [name, value] = wanted.split("=");
    if (cookieValue(header, name) !== value) return null;
  }
  return visitFromCookie(header);
}

/** The /v1/recommend body the script would send for this page and visit. */
export function pageRequest(page, visit, url) {
  const items = page.slots.filter((s) => s.kind === "items").map((s) => s.k);
  const slots = [
    ...new Set(page.slots.filter((s) => s.kind === "slot" && s.name).map((s) => s.name)),
  ];
  return buildRequest(visit, {
    userId: visit ? page.user : null,
    context: { page: url.pathname.slice(0, 256) },
    k: Math.min(100, Math.max(DEFAULTS.k, ...items)),
    slots: slots.slice(0, 20),
    fields: DEFAULTS.fields,
    product: page.product,
  });
}

// ------------------------------------------------------------------ filling the page
/** The slot's new inner HTML for `answer`, or null to leave the shop's default content. */
export function slotHtml(page, slot, answer) {
  const shown = slotContent(slot, answer);
  const variants = page.templates.get(slot.template);
  const template =
    shown && variants && shown.variants.map((v) => variants.get(v)).find((t) => t !== undefined);
  if (template === undefined || template === null || !shown) return null;
  return shown.records.map((record) => renderRecord(template, record)).join("");
}

/** The answer as a JSON data block the script adopts, with the session it was asked for (""
 * without consent): "<" escaped, so no text in it can close the element. */
export function answerBlock(answer, sessionId = "") {
  const json = JSON.stringify(answer).replace(/</g, "\\u003c");
  const session = sessionId.replace(/[^\w.:-]/g, "");
  return `<script type="application/json" id="edgeperso-answer" data-session="${session}">${json}</script>`;
}

/** The page with its slots filled from `answer`, through `Rewriter` (HTMLRewriter). */
export function fillPage(Rewriter, html, page, answer, headers, sessionId = "") {
  let filled = 0;
  const rewritten = new Rewriter()
    .on("[data-edgeperso-slot]", {
      element(el) {
        const slot = slotOf({
          "data-edgeperso-slot": el.getAttribute("data-edgeperso-slot"),
          "data-edgeperso-name": el.getAttribute("data-edgeperso-name") ?? undefined,
          "data-edgeperso-k": el.getAttribute("data-edgeperso-k") ?? undefined,
          "data-edgeperso-template": el.getAttribute("data-edgeperso-template") ?? undefined,
        });
        const inner = slotHtml(page, slot, answer);
        if (inner === null) return;
        el.setInnerContent(inner, { html: true });
        el.setAttribute("data-edgeperso-filled", "edge");
        filled += 1;
      },
    })
    .on("body", {
      element(el) {
        el.onEndTag((end) => end.before(answerBlock(answer, sessionId), { html: true }));
      },
    })
    .transform(new Response(html, { headers }));
  return { response: rewritten, filled: () => filled };
}
