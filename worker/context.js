// The visitor's context as the edge app reads it: device from the User-Agent, country and
// timezone from what Cloudflare knows of the request (`request.cf`), local hour and its bucket.
// It must agree with edge/context.py: both are checked against tests/cases/context.json.

export const HOUR_BUCKETS = ["night", "morning", "afternoon", "evening"]; // 0-5, 6-11, 12-17, 18-23

const TABLET = /ipad|tablet|kindle|silk|playbook|(android(?!.*mobile))/i;
const MOBILE = /mobi|iphone|ipod|android|blackberry|opera mini|windows phone/i;

export function normalizeLabel(value) {
  return typeof value === "string" ? value.trim().toLowerCase() : "";
}

export function deviceFromUserAgent(userAgent) {
  if (!userAgent) return "";
  if (TABLET.test(userAgent)) return "tablet";
  if (MOBILE.test(userAgent)) return "mobile";
  return "desktop";
}

// The hour (0-23) in an IANA timezone at `nowMs`, or null for an unknown zone.
export function localHour(timezone, nowMs = Date.now()) {
  if (!timezone) return null;
  let format;
  try {
    format = new Intl.DateTimeFormat("en-GB", {
      timeZone: timezone.trim(),
      hour: "numeric",
      hourCycle: "h23",
    });
  } catch {
    return null; // RangeError: not a timezone
  }
  const hour = format.formatToParts(new Date(nowMs)).find((part) => part.type === "hour");
  return hour ? Number(hour.value) % 24 : null;
}

export function hourBucket(hour) {
  return HOUR_BUCKETS[Math.floor(hour / 6)];
}

// What the gateway tells the app about the visitor, in the headers the app reads when the body
// does not say (edge/context.py). These carry the CDN's word (headers.js drops a client's own);
// the page can say more in the request body.
export function contextHeaders(request) {
  const cf = request.cf ?? {};
  return {
    "x-edgeperso-country": normalizeLabel(cf.country),
    "x-edgeperso-timezone": typeof cf.timezone === "string" ? cf.timezone : "",
    "x-edgeperso-device": deviceFromUserAgent(request.headers.get("user-agent")),
  };
}

// The context of an answer, as edge/context.py resolves it: the body wins, headers fill the rest.
export function resolveContext(body, headers, nowMs = Date.now()) {
  const given = body && typeof body === "object" ? body : {};
  const device =
    normalizeLabel(given.device) ||
    normalizeLabel(headers["x-edgeperso-device"]) ||
    deviceFromUserAgent(headers["user-agent"]);
  const country = normalizeLabel(given.country) || normalizeLabel(headers["x-edgeperso-country"]);
  let hour =
    Number.isInteger(given.local_hour) && given.local_hour >= 0 && given.local_hour <= 23
      ? given.local_hour
      : localHour(headers["x-edgeperso-timezone"], nowMs);
  if (hour === null) hour = new Date(nowMs).getUTCHours();
  return {
    device,
    country,
    local_hour: hour,
    hour_bucket: hourBucket(hour),
    page: typeof given.page === "string" ? given.page : null,
  };
}
