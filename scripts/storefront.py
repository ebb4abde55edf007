"""The demo storefront: a small shop built from the shipped sample's catalog (home, category,
product and cart pages, with edgeperso.js on each), served on 127.0.0.1 behind the gateway
Worker (`wrangler dev`), which fills the pages' slots before they reach the browser, in front of
the edge app. What it shows: segment-specific home content, a recommendation strip, a bandit's
banner, accessories after a long look at a product, the abandoned-cart offer and the
third-visit offer.

    make storefront     (or: python scripts/storefront.py [--port 8787] [--out build/storefront])

It builds the demo's bundle once (the shipped config, plus an experiment and a banner bandit),
writes the pages, starts the app, a static server for the pages (the shop's origin) and the
gateway, prints the address, and stops everything on Ctrl-C. `--ready-file` writes the
addresses as JSON once everything answers (the browser tests use it).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from edge.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "online_retail_sample.csv.gz"
CONFIG = ROOT / "configs" / "online_retail.toml"
SCRIPT = ROOT / "storefront" / "edgeperso.js"
ASSETS = ROOT / "storefront" / "demo"
WRANGLER = ROOT / "node_modules" / ".bin" / "wrangler"
# What the demo adds to the shipped config: a banner chosen by a bandit, and the strip's ranker
# under an experiment (a tenth of visitors get popular items, for comparison).
DEMO_CONFIG = """

[[experiments]]
key = "strip-ranker"
unit = "user"
variants = [
  { name = "holdout", weight = 10, ranker = "popularity" },
  { name = "personalized", weight = 90 },
]

[[bandits]]
slot = "home-banner"
arms = [
  { name = "new-arrivals", content = { banner = "New in: the season's first arrivals" } },
  { name = "free-shipping", content = { banner = "Free delivery on orders over £40" } },
]
"""
PRODUCTS_PER_CATEGORY = 24
CATEGORIES = 6
# Home content for each segment the build may name, by a word in its name.
SEGMENT_COPY = {
    "lapsed": "We missed you: here is what is new since your last visit.",
    "loyal": "Thank you for shopping with us again: your favourites are back in stock.",
    "big-spending": "Our finest pieces, picked for you.",
    "recent": "Welcome back: more of what you liked last time.",
}


@dataclass(frozen=True)
class Product:
    item_id: str
    title: str
    price: float

    @property
    def url(self) -> str:
        return f"/p/{self.item_id}.html"


# ---------------------------------------------------------------- the bundle
def build_bundle(out: Path) -> Path:
    """The demo's bundle in `out`/bundle, built once (delete it to build again)."""
    bundle = out / "bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    config = out / "shop.toml"
    out.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG.read_text() + DEMO_CONFIG)
    print(f"building the demo's bundle from {SAMPLE.name} (a minute at most)", flush=True)
    subprocess.run(
        [sys.executable, "-m", "export.cli", "export", "--events", str(SAMPLE), "--config",
         str(config), "--out", str(bundle), "--no-evaluate", "--quiet"],
        check=True,
    )  # fmt: skip
    return bundle


# ---------------------------------------------------------------- the pages
def products_of(bundle_dir: Path) -> tuple[list[Product], dict[str, Product], list[str]]:
    """The shop's products (every item of the bundle with a title), the popular ones first,
    and the bundle's segment names."""
    from edge.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    items = bundle.model.items
    by_id: dict[str, Product] = {}
    for i, item_id in enumerate(items.ids):
        title = items.title(i)
        price = float(items.price[i])
        if title and price == price and price > 0:
            by_id[item_id] = Product(item_id, title, round(price, 2))
    popular = [by_id[i] for i, _ in bundle.fallback.get("all", []) if i in by_id]
    rest = sorted(set(by_id) - {p.item_id for p in popular})
    info = bundle.manifest.models.segments
    segments = list(info.clusters) + [r.name for r in info.rules] if info else []
    return popular + [by_id[i] for i in rest], by_id, segments


def categories_of(products: list[Product]) -> dict[str, list[Product]]:
    """The demo's categories: the most common last words of the popular products' titles
    (holders, bags, signs...). The sample has no categories of its own."""
    word = lambda p: p.title.split()[-1].lower()  # noqa: E731
    common = Counter(word(p) for p in products[:400]).most_common(CATEGORIES)
    return {w: [p for p in products if word(p) == w][:PRODUCTS_PER_CATEGORY] for w, _ in common}


def page(title: str, body: str, categories: list[str], product: Product | None = None) -> str:
    meta = ""
    if product is not None:
        meta = f'<meta name="edgeperso:product" content="{html.escape(product.item_id)}">'
    links = "".join(f'<a href="/c/{c}.html">{html.escape(c.title())}</a>' for c in categories)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · Demo shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">{meta}
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/style.css"></head>
<body><header><a class="brand" href="/">Demo shop</a>{links}<a href="/cart.html">Cart</a></header>
<main>{body}</main>
<div id="consent" hidden><span>May we remember your visit to personalize this shop?</span>
<button data-consent="yes">Accept</button><button data-consent="no">Refuse</button></div>
{TEMPLATES}
<script type="module" src="/shop.js"></script></body></html>
"""


# The shop's templates (docs/storefront.md): what edgeperso.js and the gateway fill slots with.
TEMPLATES = (
    '<template data-edgeperso-template="tile"><a class="tile" href="/p/{{item_id}}.html">'
    '<span class="title">{{title}}</span><span class="price">£{{price}}</span></a></template>\n'
    '<template data-edgeperso-template="offer"><div class="offer"><strong>{{discount_percent}}% '
    "off</strong> with code <code>{{code}}</code> <small>({{rule}})</small></div></template>\n"
    '<template data-edgeperso-template="banner"><div class="banner">{{banner}}</div></template>'
)


def strip(title: str, kind: str, k: int, fallback: list[Product], name: str = "") -> str:
    default = "".join(tile(p) for p in fallback[:k])
    named = f' data-edgeperso-name="{name}"' if name else ""
    return (
        f"<h2>{html.escape(title)}</h2>"
        f'<div class="strip" data-edgeperso-slot="{kind}"{named} data-edgeperso-k="{k}" '
        f'data-edgeperso-template="tile">{default}</div>'
    )


def tile(p: Product) -> str:
    return (
        f'<a class="tile" href="{p.url}"><span class="title">{html.escape(p.title)}</span>'
        f'<span class="price">£{p.price:.2f}</span></a>'
    )


OFFER_SLOT = '<div data-edgeperso-slot="offer" data-edgeperso-template="offer"></div>'


def home(products: list[Product], categories: list[str], segments: list[str]) -> str:
    heroes = "".join(
        f'<template data-edgeperso-template="hero" data-edgeperso-for="{html.escape(s)}">'
        f'<div class="hero" data-segment="{html.escape(s)}"><h1>{html.escape(copy_for(s))}</h1>'
        "</div></template>"
        for s in segments
    )
    body = (
        '<div data-edgeperso-slot="content" data-edgeperso-template="hero">'
        '<div class="hero"><h1>Gifts and homeware, since 2010</h1></div></div>'
        f"{heroes}{OFFER_SLOT}"
        '<div data-edgeperso-slot="slot" data-edgeperso-name="home-banner" '
        'data-edgeperso-template="banner"><div class="banner">Welcome to the demo shop</div></div>'
        + strip("Picked for you", "items", 8, products, name="home-strip")
    )
    return page("Home", body, categories)


def copy_for(segment: str) -> str:
    return next((text for word, text in SEGMENT_COPY.items() if word in segment), f"For {segment}")


def category_page(
    name: str, products: list[Product], popular: list[Product], cats: list[str]
) -> str:
    body = (
        f'<h1>{html.escape(name.title())}</h1><div class="strip">'
        + "".join(tile(p) for p in products)
        + f"</div>{OFFER_SLOT}"
        + strip("You may also like", "items", 6, popular, name="category-strip")
    )
    return page(name.title(), body, cats)


def product_page(p: Product, popular: list[Product], cats: list[str]) -> str:
    body = (
        f'<h1>{html.escape(p.title)}</h1><p class="price">£{p.price:.2f}</p>'
        f'<button data-add="{html.escape(p.item_id)}" data-title="{html.escape(p.title)}" '
        f'data-price="{p.price}">Add to cart</button>{OFFER_SLOT}'
        "<h2>Goes well with</h2>"
        '<div class="strip" data-edgeperso-slot="accessories" data-edgeperso-template="tile">'
        "<p>Take your time: what goes with it appears here.</p></div>"
        + strip("You may also like", "items", 6, popular, name="product-strip")
    )
    return page(p.title, body, cats, product=p)


def cart_page(popular: list[Product], cats: list[str]) -> str:
    body = (
        '<h1>Your cart</h1><ul id="cart-items"></ul><button id="buy">Buy now</button>'
        f"{OFFER_SLOT}" + strip("Before you go", "items", 6, popular, name="cart-strip")
    )
    return page("Cart", body, cats)


def write_site(bundle_dir: Path, site: Path) -> int:
    """Every page, the script and the assets into `site`; how many product pages."""
    products, _, segments = products_of(bundle_dir)
    categories = categories_of(products)
    names = list(categories)
    shutil.rmtree(site, ignore_errors=True)
    (site / "p").mkdir(parents=True)
    (site / "c").mkdir()
    shutil.copy(SCRIPT, site / "edgeperso.js")
    for asset in ("shop.js", "style.css"):
        shutil.copy(ASSETS / asset, site / asset)
    (site / "index.html").write_text(home(products, names, segments))
    (site / "cart.html").write_text(cart_page(products, names))
    for name, members in categories.items():
        (site / "c" / f"{name}.html").write_text(category_page(name, members, products, names))
    for p in products:
        (site / "p" / f"{p.item_id}.html").write_text(product_page(p, products, names))
    return len(products)


# ---------------------------------------------------------------- serving it
class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
        pass


@contextlib.contextmanager
def origin(site: Path, port: int) -> Iterator[ThreadingHTTPServer]:
    """The shop's origin: its static pages on 127.0.0.1."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def wait_until(url: str, process: subprocess.Popen[bytes], seconds: float, want: int = 200) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[0]} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == want:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds:.0f}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def serve(out: Path, port: int, ready_file: Path | None) -> None:
    bundle = build_bundle(out)
    site = out / "site"
    count = write_site(bundle, site)
    print(f"{count:,} product pages written to {site}", flush=True)
    state, logs = out / "gateway-state", out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"WRANGLER_SEND_METRICS": "false", "NO_COLOR": "1",
                        "WRANGLER_LOG_PATH": str(logs / "wrangler")}  # fmt: skip
    content = out / "gateway-content.json"
    subprocess.run(
        [sys.executable, "-m", "edge", "gateway-content", str(bundle), "--out", str(content)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [str(WRANGLER), "kv", "key", "put", "fallback", "--path", str(content), "--binding",
         "FALLBACK", "--local", "--env", "local", "--persist-to", str(state)],
        check=True, capture_output=True, cwd=ROOT, env=env,
    )  # fmt: skip
    app_port, origin_port = free_port(), free_port()
    app_log = (logs / "app.log").open("w")
    app = subprocess.Popen(
        [sys.executable, "-m", "edge", "serve", "--bundle", str(bundle), "--events-dir",
         str(out / "events"), "--host", "127.0.0.1", "--port", str(app_port)],
        stdout=app_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    gateway_log = (logs / "wrangler-dev.log").open("w")
    gateway = subprocess.Popen(
        [str(WRANGLER), "dev", "--env", "local", "--ip", "127.0.0.1", "--port", str(port),
         "--inspector-port", str(free_port()), "--persist-to", str(state),
         "--show-interactive-dev-session=false",
         "--var", f"APP_ORIGIN:http://127.0.0.1:{app_port}",
         "--var", f"SHOP_ORIGIN:http://127.0.0.1:{origin_port}",
         "--var", "CONSENT_COOKIE:consent=yes"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=gateway_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        with origin(site, origin_port):
            wait_until(f"http://127.0.0.1:{app_port}/readyz", app, 60)
            wait_until(f"http://127.0.0.1:{port}/index.html", gateway, 120)
            addresses = {
                "shop": f"http://127.0.0.1:{port}",
                "app": f"http://127.0.0.1:{app_port}",
                "app_pid": app.pid,
                "origin": f"http://127.0.0.1:{origin_port}",
                "events": str(out / "events"),
                "bundle": str(bundle),
            }
            if ready_file is not None:
                ready_file.write_text(json.dumps(addresses))
            print(f"the demo shop is at {addresses['shop']}/ (Ctrl-C stops it)", flush=True)
            done.wait()
    finally:
        for process in (gateway, app):
            stop(process)
        app_log.close()
        gateway_log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8787, help="the shop's port on 127.0.0.1")
    parser.add_argument("--out", default=str(ROOT / "build" / "storefront"))
    parser.add_argument("--ready-file", help="write the addresses here as JSON once ready")
    args = parser.parse_args()
    serve(Path(args.out), args.port, Path(args.ready_file) if args.ready_file else None)


if __name__ == "__main__":
    main()
