// The demo shop's own page code: its consent banner and its cart. edgeperso.js is started here
// the way a shop starts it: with the shop's consent decision and the product the page is about.

import { start } from "/edgeperso.js";

const consent = () => /(?:^|;\s*)consent=yes(?:;|$)/.test(document.cookie);
const decided = () => /(?:^|;\s*)consent=(?:yes|no)(?:;|$)/.test(document.cookie);
const product = document.querySelector('meta[name="edgeperso:product"]')?.content || null;

const perso = start({ consent, product });
window.edgeperso = perso; // for the curious, in the browser's console

// ---------------------------------------------------------------- consent
const banner = document.getElementById("consent");
if (banner && !decided()) banner.hidden = false;
for (const button of document.querySelectorAll("[data-consent]")) {
  button.addEventListener("click", () => {
    document.cookie = `consent=${button.dataset.consent}; path=/; SameSite=Lax; max-age=31536000`;
    location.reload();
  });
}

// ---------------------------------------------------------------- the cart (the shop's own)
// Kept in sessionStorage only with consent, as a shop without a server-side cart would.
const CART = "demo-cart";
const readCart = () => (consent() ? JSON.parse(sessionStorage.getItem(CART) || "[]") : []);
const writeCart = (cart) => consent() && sessionStorage.setItem(CART, JSON.stringify(cart));

for (const button of document.querySelectorAll("[data-add]")) {
  button.addEventListener("click", () => {
    const { add: id, title, price } = button.dataset;
    writeCart([...readCart().filter((p) => p.id !== id), { id, title, price: +price }]);
    perso.track("add_to_cart", id, { price: +price, qty: 1 });
    button.textContent = "In your cart";
  });
}

const list = document.getElementById("cart-items");
if (list) {
  const cart = readCart();
  list.innerHTML = cart.length ? "" : "<li>Your cart is empty.</li>";
  for (const p of cart) {
    const li = document.createElement("li");
    li.textContent = `${p.title} — £${p.price.toFixed(2)}`;
    list.append(li);
  }
  document.getElementById("buy")?.addEventListener("click", async () => {
    for (const p of readCart()) await perso.track("purchase", p.id, { price: p.price, qty: 1 });
    writeCart([]);
    list.innerHTML = "<li>Thank you for your order.</li>";
  });
}
