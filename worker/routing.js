// Which container instance answers a request: one pool per region, started near the visitor.
//
// A container runs where its Durable Object was first created, and keeps running there. Spread
// over one worldwide pool, every visitor would be served from wherever the first few requests
// came from. Instead the gateway names instances by region (`weur-0`, `weur-1`, `apac-0`...) and
// asks for each with that region as its location hint, so a region's traffic starts, and then
// reuses, instances near it. The region comes from `request.cf` (continent, country,
// longitude), mapped onto Durable Objects' location hints.

import { ConfigError } from "./gateway.js";

// Durable Objects' location hints, and the representative longitude splits between them.
export const REGIONS = ["wnam", "enam", "sam", "weur", "eeur", "apac", "oc", "afr", "me"];
export const DEFAULT_REGION = "enam"; // a request whose place is unknown (tests, Tor, Antarctica)
const MIDDLE_EAST = new Set([
  "AE",
  "BH",
  "CY",
  "EG",
  "IL",
  "IQ",
  "IR",
  "JO",
  "KW",
  "LB",
  "OM",
  "PS",
  "QA",
  "SA",
  "SY",
  "TR",
  "YE",
]);
const WEST_OF_NORTH_AMERICA = -100; // degrees of longitude: the Rockies roughly
const EAST_OF_EUROPE = 20; // Poland's and Hungary's east, the Baltics

// The region of a request from what the runtime says of where it came from.
export function regionOf(cf) {
  const continent = String(cf?.continent ?? "").toUpperCase();
  const country = String(cf?.country ?? "").toUpperCase();
  const longitude = Number.parseFloat(cf?.longitude);
  if (MIDDLE_EAST.has(country)) return "me";
  switch (continent) {
    case "NA":
      return Number.isFinite(longitude) && longitude < WEST_OF_NORTH_AMERICA ? "wnam" : "enam";
    case "SA":
      return "sam";
    case "EU":
      return Number.isFinite(longitude) && longitude > EAST_OF_EUROPE ? "eeur" : "weur";
    case "AS":
      return "apac";
    case "OC":
      return "oc";
    case "AF":
      return "afr";
    default:
      return DEFAULT_REGION;
  }
}

// Instances per region: APP_INSTANCES (default 2) for every region, and APP_INSTANCES_BY_REGION
// ("weur=4,enam=3,afr=1") for the regions that need another number. A region set to 0 sends its
// visitors to DEFAULT_REGION's pool (or, when that is 0 too, the first region with a pool).
export function poolSizes(env) {
  const everywhere = count(env.APP_INSTANCES, "APP_INSTANCES", 2);
  const sizes = Object.fromEntries(REGIONS.map((region) => [region, everywhere]));
  const given = String(env.APP_INSTANCES_BY_REGION ?? "").trim();
  for (const part of given ? given.split(",") : []) {
    const [region, value, extra] = part.split("=").map((s) => s.trim());
    if (!REGIONS.includes(region) || value === undefined || extra !== undefined) {
      throw new ConfigError(
        `APP_INSTANCES_BY_REGION must be region=count pairs separated by commas, regions among ` +
          `${REGIONS.join(", ")}; got ${JSON.stringify(given)}`,
      );
    }
    sizes[region] = count(value, `APP_INSTANCES_BY_REGION's ${region}`, everywhere);
  }
  if (REGIONS.every((region) => sizes[region] === 0)) {
    throw new ConfigError("APP_INSTANCES_BY_REGION leaves no region with an instance");
  }
  return sizes;
}

function count(raw, name, fallback) {
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 1000) {
    throw new ConfigError(
      `${name} must be a whole number from 0 to 1000, got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

// The instance for a request: its name and the location hint it is created with.
export function pickInstance(cf, sizes, random = Math.random) {
  let region = regionOf(cf);
  if (sizes[region] === 0) {
    region = sizes[DEFAULT_REGION] > 0 ? DEFAULT_REGION : REGIONS.find((r) => sizes[r] > 0);
  }
  const index = Math.floor(random() * sizes[region]);
  return { name: `${region}-${index}`, locationHint: region };
}
