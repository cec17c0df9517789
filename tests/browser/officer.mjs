// Drives the compliance officer's page in Debian's headless chromium (playwright-core).
// Environment: ADMIN_URL, OFFICER_TOKEN, PLAIN_TOKEN (no role), SEEDED_DECISIONS,
// SCREENSHOT (docs/officer-page.png), ARTIFACTS (a directory), USER_DATA_DIR (fresh).
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const admin = env("ADMIN_URL");
const officer = env("OFFICER_TOKEN");
const plain = env("PLAIN_TOKEN");
const seeded = Number(env("SEEDED_DECISIONS"));
const artifacts = env("ARTIFACTS");
mkdirSync(artifacts, { recursive: true });

const context = await chromium.launchPersistentContext(env("USER_DATA_DIR"), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  ignoreHTTPSErrors: true, // the gateway's development certificate
  viewport: { width: 1440, height: 900 },
  deviceScaleFactor: 1,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const step = (m) => console.log("ok -", m);
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const failures = [];
  page.on("pageerror", (e) => failures.push(String(e)));
  page.on("requestfailed", (r) => failures.push(`request failed: ${r.url()}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(admin)) failures.push(`request outside the gateway: ${r.url()}`);
  });

  await page.goto(admin + "/");
  await page.locator("#login").waitFor({ state: "visible" });
  step("the page asks for a token");

  // A token without the role is refused, by the API and on the page.
  const status = await page.evaluate(async (t) => {
    const r = await fetch("/audit/records", { headers: { Authorization: "Bearer " + t } });
    return r.status;
  }, plain);
  assert.equal(status, 403, "a token without the compliance-officer role gets 403");
  const anon = await page.evaluate(async () => (await fetch("/audit/records")).status);
  assert.equal(anon, 401, "no token gets 401");
  await page.fill("#token-input", plain);
  await page.click("#sign-in");
  await page.locator("#login-error").filter({ hasText: "compliance-officer" }).waitFor();
  assert.equal(await page.locator("#dash").isHidden(), true);
  step("a token without the role is refused (403)");

  // The officer signs in and sees the seeded records.
  await page.fill("#token-input", officer);
  await page.click("#sign-in");
  await page.locator("#dash").waitFor({ state: "visible" });
  await page.locator("#records tbody tr").first().waitFor();
  const total = await page.locator("#records tbody tr").count();
  assert.equal(total, Math.min(seeded, 200), `the table lists the ${seeded} seeded decisions`);
  assert.equal(await page.locator("#k-decisions").textContent(), String(seeded));
  const table = await page.locator("#records").textContent();
  for (const want of ["eu-clinical", "eu.adequacy.jp", "globex-us"]) assert.ok(table.includes(want), want);
  assert.ok((await page.locator("#chart-time svg rect").count()) >= 9, "one or two bars per day");
  const dest = await page.locator("#chart-dest").textContent();
  for (const c of ["US", "JP", "CH", "BR"]) assert.ok(dest.includes(c), `destination ${c} charted`);
  assert.ok((await page.locator("#refusals li").count()) >= 2, "refusals listed");
  assert.equal(await page.locator("#k-chain").textContent(), "Intact");
  const sig = await page.locator("#sig-status").textContent();
  assert.ok(sig.includes("not checked"), `checkpoint signature status shown: ${sig}`);
  assert.equal(await page.locator("#sign-out").isVisible(), true);
  step(`the page shows ${total} seeded records, charts, refusals and an intact chain`);

  await page.screenshot({ path: join(artifacts, "officer-page.png"), fullPage: true });
  await page.screenshot({ path: env("SCREENSHOT"), fullPage: true });
  step("screenshot saved");

  // Filtering changes the table: refusals to the US only.
  await page.selectOption("#f-decision", "deny");
  await page.fill("#f-destination", "us");
  await page.click("#apply");
  // (Polled from here: the page's CSP forbids the eval waitForFunction needs.)
  const rows = page.locator("#records tbody tr");
  for (let i = 0; i < 100 && (await rows.count()) >= total; i++) await page.waitForTimeout(50);
  const n = await rows.count();
  assert.ok(n > 0, "some US refusals");
  for (let i = 0; i < n; i++) {
    const text = await rows.nth(i).textContent();
    assert.ok(text.includes("deny") && text.includes("US"), text);
  }
  step(`filtering for refusals to US leaves ${n} of ${total} rows`);

  // Drill down to one record's full JSON.
  await rows.first().click();
  await page.locator("#drawer").waitFor({ state: "visible" });
  const json = await page.locator("#drawer-json").textContent();
  const rec = JSON.parse(json);
  assert.equal(rec.decision, "deny");
  assert.equal(rec.destination, "US");
  assert.ok(rec.hash && rec.prev, "the record carries its chain fields");
  await page.screenshot({ path: join(artifacts, "officer-record.png"), fullPage: false });
  step("a record opens with its full JSON");

  assert.deepEqual(failures, [], "no script errors, failed or outside requests");
  console.log("all checks passed");
} finally {
  await context.close();
}
