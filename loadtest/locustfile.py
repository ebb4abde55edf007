"""Shop traffic for Locust: visitors whose sessions grow view by view, known customers, carts,
feedback batches, and a few malformed requests that must be refused with their 4xx.

    locust -f loadtest/locustfile.py --host https://edge.shop.example --bundle build/bundle
    locust -f loadtest/locustfile.py --host https://edge.shop.example \
        --item-ids items.txt [--user-ids customers.txt]

Ids come from a bundle directory (`--bundle DIR` or EDGEPERSO_LOADTEST_BUNDLE; reading it needs
the edgeperso package) or from plain text files with one id a line (`--item-ids FILE`,
`--user-ids FILE`, or EDGEPERSO_LOADTEST_ITEM_IDS / _USER_IDS), for a shop's own deployment.
Without user ids every visitor is anonymous. `python loadtest/run.py` runs this file against a
server it starts on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gevent
from locust import FastHttpUser, constant_throughput, events, task
from locust.runners import WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

# ---------------------------------------------------------------- the mix
# Relative weights of what a visitor does next; Locust picks one task by weight each time.
VIEW_WEIGHT = 60  # views one more product: the session grows by a view (sometimes a cart add)
CART_WEIGHT = 10  # opens the cart page: a recommendation with the cart (abandoned-cart rule)
FEEDBACK_WEIGHT = 25  # the page reports impressions, clicks and shop events (POST /v1/events)
MALFORMED_WEIGHT = 5  # a broken request that must get its 4xx, never a 200 or a 500

KNOWN_SHARE = 0.3  # sessions of a known customer (user id sent), when user ids are given
ADD_TO_CART_SHARE = 0.15  # product views that also put the product in the cart
LONG_DWELL_SHARE = 0.1  # views over 30 s (the long-dwell rule's accessories)
SESSION_VIEWS = (1, 12)  # a session ends after this many views (uniform), then a new one starts
FEEDBACK_BATCH = (1, 8)  # events per /v1/events batch
PURCHASE_SHARE = 0.1  # feedback batches that also report the cart bought (and empty it)
DEVICES = {"mobile": 0.6, "desktop": 0.35, "tablet": 0.05}
# Time between two actions of one visitor. Real visitors think for seconds; a short pause keeps
# each Locust user busy, so the load is set by the number of users (`-u`), unless
# --visitor-rate paces every visitor to that many actions a second (the load is then users ×
# rate, whatever the server's speed: `loadtest/run.py --rate`).
THINK_SECONDS = (0.01, 0.05)

RECOMMEND, EVENTS = "/v1/recommend", "/v1/events"
# Each malformed request: the stats row it is counted under, its path, its body, the status the
# API documents for it (docs/api.md).
MALFORMED = (
    (f"{RECOMMEND} [bad JSON: 400]", RECOMMEND, b'{"k": 5, "session": {"events": [', 400),
    (f"{RECOMMEND} [k out of range: 422]", RECOMMEND, b'{"k": 101}', 422),
    (f"{RECOMMEND} [unknown field: 422]", RECOMMEND, b'{"k": 5, "user": "x"}', 422),
    (f"{EVENTS} [empty batch: 422]", EVENTS, b'{"events": []}', 422),
)
JSON_HEADERS = {"content-type": "application/json"}
# Fallbacks that mean the service is broken rather than degraded under load (docs/api.md,
# "Fallbacks").
BROKEN_FALLBACKS = ("error:", "bundle_unavailable:")

log = logging.getLogger("edgeperso.loadtest")


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    parser.add_argument(
        "--bundle",
        env_var="EDGEPERSO_LOADTEST_BUNDLE",
        default="",
        help="bundle directory: user ids from its profiles, item ids from its items",
    )
    parser.add_argument(
        "--user-ids",
        env_var="EDGEPERSO_LOADTEST_USER_IDS",
        default="",
        help="text file, one known customer id a line (instead of the bundle's profiles)",
    )
    parser.add_argument(
        "--visitor-rate",
        env_var="EDGEPERSO_LOADTEST_VISITOR_RATE",
        type=float,
        default=0.0,
        help="at most this many actions a second per visitor (0: only the think time of "
        f"{THINK_SECONDS[0]}-{THINK_SECONDS[1]} s between them)",
    )
    parser.add_argument(
        "--item-ids",
        env_var="EDGEPERSO_LOADTEST_ITEM_IDS",
        default="",
        help="text file, one item id a line (instead of the bundle's items)",
    )


@dataclass(frozen=True)
class Catalog:
    """What visitors pick from: item ids, known customer ids (may be empty), countries."""

    items: list[str]
    users: list[str]
    countries: list[str]


def read_ids(path: str, what: str) -> list[str]:
    try:
        ids = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ValueError(f"cannot read the {what} file {path!r}: {exc}") from None
    if not ids:
        raise ValueError(f"the {what} file {path!r} has no ids; give one id a line")
    return ids


def load_catalog(bundle: str, user_ids: str, item_ids: str) -> Catalog:
    """Files win over the bundle, so a shop can point at its own customers with any bundle."""
    items: list[str] = []
    users: list[str] = []
    countries: list[str] = []
    if bundle:
        try:  # only now: a shop's testers with id files need no edgeperso package
            from edge.bundle import load_bundle
        except ImportError:
            raise ValueError(
                "reading --bundle needs the edgeperso package (pip install edgeperso); without "
                "it, give --item-ids FILE and --user-ids FILE"
            ) from None
        loaded = load_bundle(bundle)
        items = list(loaded.model.items.ids)
        listed = getattr(loaded.profiles, "user_ids", None)  # only the embedded store lists them
        users = list(listed()) if listed else []  # sorted: the store keeps them in id order
        # Context keys such as "country=de": the countries the bundle has popularity for.
        countries = sorted(k.split("=", 1)[1] for k in loaded.fallback if k.startswith("country="))
    if item_ids:
        items = read_ids(item_ids, "item ids")
    if user_ids:
        users = read_ids(user_ids, "user ids")
    if not items:
        raise ValueError(
            "sessions need item ids: give --bundle DIR (a bundle made by edgeperso export) or "
            "--item-ids FILE (one item id a line)"
        )
    return Catalog(items, users, countries)


_catalog: Catalog | None = None  # one per process, read once


def catalog(options) -> Catalog:
    global _catalog
    if _catalog is None:
        _catalog = load_catalog(options.bundle, options.user_ids, options.item_ids)
    return _catalog


@events.init.add_listener
def check_arguments(environment, **_) -> None:
    """Fail before the run on a bad bundle or file. Remote workers get their options from the
    master later, so they read the catalog when their first visitor starts."""
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    try:
        found = catalog(environment.parsed_options)
    except Exception as exc:  # a bundle refused, a file missing: say it and stop
        log.error("loadtest: %s", exc)
        sys.exit(2)
    log.info(
        "loadtest: %d items, %d known customers%s",
        len(found.items),
        len(found.users),
        "" if found.users else " (every visitor is anonymous)",
    )


@events.quitting.add_listener
def last_csv_write(environment, **_) -> None:
    """Locust writes its CSV files once a second and closes them at exit without a last write
    (locustio/locust#2299), so a short run's files can miss its last second, failures
    included. The users have stopped by now: wait for one more write."""
    options = environment.parsed_options
    if options is not None and options.csv_prefix:
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


def now_iso(minutes_ago: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")


class Shopper(FastHttpUser):
    """One visitor at a time: a session of product views, then the next visitor."""

    def wait_time(self) -> float:
        rate = self.environment.parsed_options.visitor_rate
        if rate > 0:  # paced: waits out the rest of 1/rate after each action
            return constant_throughput(rate)(self)
        return random.uniform(*THINK_SECONDS)

    def on_start(self) -> None:
        self.catalog = catalog(self.environment.parsed_options)
        self.broken_requests = itertools.cycle(MALFORMED)
        # Random, not a counter: forked Locust workers would count alike.
        self.id_prefix = f"lt-{random.getrandbits(48):012x}"
        self.counter = itertools.count()
        self.new_session()

    def next_id(self, kind: str) -> str:
        return f"{self.id_prefix}-{kind}{next(self.counter)}"

    def new_session(self) -> None:
        self.session_id = self.next_id("s")
        known = self.catalog.users and random.random() < KNOWN_SHARE
        self.user_id = random.choice(self.catalog.users) if known else None
        self.views_left = random.randint(*SESSION_VIEWS)
        self.session_events: list[dict] = []
        self.cart: list[str] = []
        self.viewed: list[str] = []
        self.device = random.choices(list(DEVICES), weights=list(DEVICES.values()))[0]
        self.country = random.choice(self.catalog.countries) if self.catalog.countries else None
        self.local_hour = random.randrange(24)
        self.visits = random.randint(1, 6)

    def whose(self) -> dict:
        who = {"session_id": self.session_id}
        if self.user_id is not None:
            who["user_id"] = self.user_id
        return who

    def page_context(self, page: str) -> dict:
        context = {"device": self.device, "local_hour": self.local_hour, "page": page}
        context |= {"cart": self.cart, "visits": self.visits}
        if self.country is not None:
            context["country"] = self.country
        return context

    def recommend(self, page: str, k: int, exclude: list[str]) -> None:
        body = self.whose() | {
            "session": {"events": self.session_events},
            "context": self.page_context(page),
            "k": k,
            "exclude": exclude,
        }
        with self.client.post(RECOMMEND, json=body, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
            elif b'"fallback":null' not in response.content:
                # A fallback under load is the designed degradation; a broken service is not.
                try:
                    reason = str(json.loads(response.content).get("fallback"))
                except (ValueError, AttributeError):
                    reason = f"error: not a recommendation: {response.text[:200]}"
                if reason.startswith(BROKEN_FALLBACKS):
                    response.failure(f"fallback answer: {reason}")

    @task(VIEW_WEIGHT)
    def view(self) -> None:
        if self.views_left <= 0:
            self.new_session()
        self.views_left -= 1
        item = random.choice(self.catalog.items)
        long_dwell = random.random() < LONG_DWELL_SHARE
        dwell_ms = random.randint(31_000, 120_000) if long_dwell else random.randint(500, 20_000)
        view = {"type": "view", "item_id": item, "ts": now_iso(), "dwell_ms": dwell_ms}
        self.session_events.append(view)
        self.viewed.append(item)
        if random.random() < ADD_TO_CART_SHARE:
            self.session_events.append({"type": "add_to_cart", "item_id": item, "ts": now_iso()})
            self.cart.append(item)
        # The product on screen stays out of its own strip (docs/api.md, "The answer").
        self.recommend(f"/p/{item}", k=10, exclude=[item])

    @task(CART_WEIGHT)
    def cart_page(self) -> None:
        if not self.cart:
            item = random.choice(self.catalog.items)
            # Put in the cart a while ago, so the abandoned-cart rule has something to see.
            added = {"type": "add_to_cart", "item_id": item, "ts": now_iso(random.uniform(1, 40))}
            self.session_events.append(added)
            self.cart.append(item)
        self.recommend("/cart", k=6, exclude=[])

    @task(FEEDBACK_WEIGHT)
    def feedback(self) -> None:
        shown = self.viewed or self.catalog.items
        batch = [
            self.whose()
            | {
                "type": random.choices(["impression", "click", "view"], weights=[8, 1, 1])[0],
                "item_id": random.choice(shown),
                "ts": now_iso(),
                "slot": "product-strip",
                "event_id": self.next_id("e"),
            }
            for _ in range(random.randint(*FEEDBACK_BATCH))
        ]
        if self.cart and random.random() < PURCHASE_SHARE:
            bought = [
                self.whose()
                | {
                    "type": "purchase",
                    "item_id": item,
                    "ts": now_iso(),
                    "price": round(random.uniform(1, 60), 2),
                    "qty": random.randint(1, 3),
                    "event_id": self.next_id("e"),
                }
                for item in self.cart
            ]
            batch += bought
            # The page tells the next recommendation too (no offers right after a purchase).
            self.session_events += [
                {"type": "purchase", "item_id": e["item_id"], "ts": e["ts"]} for e in bought
            ]
            self.cart = []
        with self.client.post(EVENTS, json={"events": batch}, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")

    @task(MALFORMED_WEIGHT)
    def malformed(self) -> None:
        name, path, body, expected = next(self.broken_requests)
        with self.client.post(
            path, data=body, headers=JSON_HEADERS, name=name, catch_response=True
        ) as response:
            if response.status_code == expected:
                response.success()
            else:
                response.failure(
                    f"expected {expected}, got {response.status_code}: {response.text[:200]}"
                )
