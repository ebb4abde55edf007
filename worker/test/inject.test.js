import { test } from "node:test";
import assert from "node:assert/strict";
import {
  answerBlock,
  consentedVisit,
  pageRequest,
  readPage,
  slotHtml,
  visitFromCookie,
} from "../inject.js";

const PAGE = `<!doctype html><html><head>
<meta name="edgeperso:product" content="22086"><meta name="edgeperso:user" content="14911">
</head><body>
<section data-edgeperso-slot="items" data-edgeperso-k="4" data-edgeperso-template="tile">default</section>
<aside data-edgeperso-slot="accessories" data-edgeperso-template="tile"></aside>
<div data-edgeperso-slot="offer" data-edgeperso-template="offer"></div>
<div data-edgeperso-slot="slot" data-edgeperso-name="home-banner" data-edgeperso-template="banner"></div>
<div data-edgeperso-slot="content" data-edgeperso-template="home"><p>Welcome</p></div>
<template data-edgeperso-template="tile"><a class="tile" href="/p/{{item_id}}.html">{{title}} {{price}}</a></template>
<template data-edgeperso-template="offer"><p class="offer">{{discount_percent}}% off: {{code}}</p></template>
<template data-edgeperso-template="banner" data-edgeperso-for="free-shipping"><b>Free shipping</b></template>
<template data-edgeperso-template="banner"><b>{{arm}}</b></template>
<template data-edgeperso-template="home" data-edgeperso-for="high-value loyal"><h2>For our best customers &amp; friends</h2></template>
</body></html>`;

const ANSWER = {
  items: [
    { item_id: "21731", score: 0.4 },
    { item_id: "<b>", score: 0.3 },
  ],
  details: { 21731: { title: "Red <retro> mug", price: 2.5 } },
  segment: "high-value loyal",
  content: {},
  rules_fired: [
    {
      rule: "abandoned-cart",
      why: "x",
      offer: { discount_percent: 10, code: "CART10" },
      items: [],
    },
    { rule: "long-dwell", why: "y", items: ["22423"] },
  ],
  slots: { "home-banner": { arm: "free-shipping", content: { banner: "fs-2" }, propensity: 0.8 } },
  decision_id: "d.1",
};

test("the page says its slots, templates, product and customer", () => {
  const page = readPage(PAGE);
  assert.deepEqual(
    page.slots.map((s) => [s.kind, s.name, s.k, s.template]),
    [
      ["items", undefined, 4, "tile"],
      ["accessories", undefined, 0, "tile"],
      ["offer", undefined, 0, "offer"],
      ["slot", "home-banner", 0, "banner"],
      ["content", undefined, 0, "home"],
    ],
  );
  assert.equal(page.product, "22086");
  assert.equal(page.user, "14911");
  assert.deepEqual([...page.templates.get("banner").keys()], ["free-shipping", null]);
  assert.equal(
    page.templates.get("home").get("high-value loyal"),
    "<h2>For our best customers &amp; friends</h2>",
  );
});

test("each slot is rendered as the script renders it, every value escaped", () => {
  const page = readPage(PAGE);
  const [items, accessories, offer, banner, content] = page.slots;
  assert.equal(
    slotHtml(page, items, ANSWER),
    '<a data-edgeperso-item="21731" class="tile" href="/p/21731.html">Red &#60;retro&#62; mug 2.50</a>' +
      '<a data-edgeperso-item="&#60;b&#62;" class="tile" href="/p/&#60;b&#62;.html"> </a>',
  );
  assert.equal(
    slotHtml(page, accessories, ANSWER),
    '<a data-edgeperso-item="22423" class="tile" href="/p/22423.html"> </a>',
  );
  assert.equal(
    slotHtml(page, offer, ANSWER),
    '<p data-edgeperso-item="abandoned-cart" class="offer">10% off: CART10</p>',
  );
  assert.equal(
    slotHtml(page, banner, ANSWER),
    '<b data-edgeperso-item="free-shipping">Free shipping</b>',
  );
  assert.match(slotHtml(page, content, ANSWER), /For our best customers/);
  const none = { ...ANSWER, rules_fired: [], slots: {}, segment: "other" };
  for (const slot of [accessories, offer, banner, content]) {
    assert.equal(slotHtml(page, slot, none), null, `${slot.kind}: the default content stays`);
  }
});

test("the answer is embedded where no text in it can end the element", () => {
  const block = answerBlock({ items: [], note: "</script><script>alert(1)</script>" });
  assert.equal(block.match(/<\/script>/g).length, 1);
  assert.ok(block.includes("\\u003c/script>"));
});

const cookie = (state) => `other=1; edgeperso=${encodeURIComponent(JSON.stringify(state))}`;

test("the script's cookie becomes the visit it keeps; anything else, no visit", () => {
  const visit = visitFromCookie(
    cookie({
      s: "s-1",
      u: "v-1",
      v: 3,
      c: ["22423"],
      e: [
        ["add_to_cart", "22423", "2026-12-01T10:00:00.000Z", 0],
        ["view", "21731", "x", 35000],
      ],
      r: ["loyalty"],
    }),
  );
  assert.deepEqual(visit, {
    id: "s-1",
    visitor: "v-1",
    visitsSincePurchase: 3,
    cart: ["22423"],
    rulesShown: ["loyalty"],
    events: [
      { type: "add_to_cart", item_id: "22423", ts: "2026-12-01T10:00:00.000Z" },
      { type: "view", item_id: "21731", ts: "x", dwell_ms: 35000 },
    ],
  });
  for (const bad of [
    "edgeperso=%7B",
    "edgeperso=null",
    cookie({ s: "", u: "v" }),
    cookie({ s: "s\u0000", u: "v" }),
    cookie({ s: "s".repeat(129), u: "v" }),
    cookie([1, 2]),
    "nothing=here",
    null,
  ]) {
    assert.equal(visitFromCookie(bad), null, String(bad));
  }
  const odd = visitFromCookie(cookie({ s: "s", u: "v", v: -4, c: [1, "ok"], e: [["view"], "x"] }));
  assert.deepEqual([odd.visitsSincePurchase, odd.cart, odd.events], [1, ["ok"], []]);
});

test("without the shop's consent cookie the visit is not used", () => {
  const request = (header) => new Request("https://shop.example/", { headers: { cookie: header } });
  const state = cookie({ s: "s", u: "v" });
  const env = { CONSENT_COOKIE: "consent=yes" };
  assert.equal(consentedVisit(request(state), env), null);
  assert.equal(consentedVisit(request(`${state}; consent=no`), env), null);
  assert.equal(consentedVisit(request(`${state}; consent=yes`), env).id, "s");
  assert.equal(consentedVisit(request(state), {}).id, "s");
});

test("the gateway asks for the page what the script would", () => {
  const page = readPage(PAGE);
  const url = new URL("https://shop.example/p/22086.html");
  const visit = visitFromCookie(
    cookie({ s: "s-1", u: "v-1", v: 1, c: [], e: [["view", "22086", "t", 0]] }),
  );
  const body = pageRequest(page, visit, url);
  assert.deepEqual(body, {
    k: 8,
    consent: true,
    context: { page: "/p/22086.html", cart: [], visits: 1 },
    slots: ["home-banner"],
    fields: ["title", "price"],
    user_id: "14911",
    session_id: "s-1",
    session: { events: [{ type: "view", item_id: "22086", ts: "t" }], rules_shown: [] },
    exclude: ["22086"],
  });
  const anonymous = pageRequest(page, null, url);
  assert.equal(anonymous.consent, false);
  assert.equal(anonymous.user_id, undefined); // no consent: not even the page's customer id
});
