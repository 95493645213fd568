// End-to-end test of Roadgate's admin web UI in a real headless Chromium (playwright-core, no
// browser download: it drives the system's /usr/bin/chromium).
//
//   node tests/web-e2e/e2e.mjs --url https://192.0.2.1:8443 --admin admin \
//        [--live-user alice] [--out target/web-e2e] [--new-user carol-e2e] [--no-p12-check]
//
// The admin password comes from $E2E_PASSWORD (or --password; the environment keeps it out of
// `ps`). Every option has an environment twin: E2E_URL, E2E_ADMIN, E2E_LIVE_USER, E2E_OUT,
// E2E_NEW_USER, E2E_CHROMIUM (default /usr/bin/chromium).
//
// Steps (each prints `PASS <step>` or `FAIL <step>: why`; the exit status is 1 if any failed):
// login with a wrong password (error shown, no session cookie), then the right one; add a user;
// issue a certificate for it, read the one-time password, download both .p12 files, check them
// with `openssl pkcs12 -info` and check a second download is refused; screenshots of every page
// at 1280x800 and at a phone viewport (390x844) with a check for horizontal overflow; if a live
// VPN user was named, wait for its session row, disconnect it through the confirm() dialog and
// wait for the row to go (prints `DISCONNECTED <session id>`); log out and check a protected page
// then redirects to the login. Uses the stable data-testid hooks documented in web/src/lib.rs.
//
// --no-p12-check skips the openssl check (for the demo example, whose fixture backend hands out
// placeholder bytes instead of real PKCS#12 files). The TLS certificate is not checked by the
// browser (the netns test checks the chain with curl against the built-in CA).

import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import os from "node:os";

// ---------------------------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const opts = {
    url: process.env.E2E_URL || "https://127.0.0.1:8443",
    admin: process.env.E2E_ADMIN || "admin",
    password: process.env.E2E_PASSWORD || "",
    liveUser: process.env.E2E_LIVE_USER || "",
    out: process.env.E2E_OUT || "target/web-e2e",
    newUser: process.env.E2E_NEW_USER || "carol-e2e",
    chromium: process.env.E2E_CHROMIUM || "/usr/bin/chromium",
    p12Check: true,
  };
  const valued = {
    "--url": "url",
    "--admin": "admin",
    "--password": "password",
    "--live-user": "liveUser",
    "--out": "out",
    "--new-user": "newUser",
    "--chromium": "chromium",
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--no-p12-check") opts.p12Check = false;
    else if (a === "-h" || a === "--help") {
      console.log(fs.readFileSync(new URL(import.meta.url)).toString().split("\n\n")[0]);
      process.exit(0);
    } else if (valued[a] && i + 1 < argv.length) opts[valued[a]] = argv[++i];
    else {
      console.error(`e2e.mjs: unknown or incomplete option ${a} (see --help)`);
      process.exit(2);
    }
  }
  if (!opts.password) {
    console.error("e2e.mjs: no admin password (set E2E_PASSWORD or pass --password)");
    process.exit(2);
  }
  opts.url = opts.url.replace(/\/+$/, "");
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const COOKIE = "__Host-roadgate";
const PAGES = [
  ["dashboard", "/"],
  ["users", "/users"],
  ["certs", "/certs"],
  ["setup", "/setup"],
  ["accounting", "/accounting"],
  ["settings", "/settings"],
  ["logs", "/logs"],
  ["audit", "/audit"],
];

fs.mkdirSync(opts.out, { recursive: true });
const downloads = fs.mkdtempSync(path.join(os.tmpdir(), "roadgate-e2e-"));

// ---------------------------------------------------------------------------------------------
// Reporting

let failures = 0;
const problems = []; // console errors, page errors, CSP violations
const expectedErrors = new Set([`${opts.url}/login`]);

function pass(step, detail) {
  console.log(`PASS ${step}${detail ? ` (${detail})` : ""}`);
}

function fail(step, why) {
  failures++;
  console.log(`FAIL ${step}: ${String(why).split("\n")[0]}`);
}

function check(cond, why) {
  if (!cond) throw new Error(why);
}

async function step(name, page, fn) {
  try {
    const detail = await fn();
    pass(name, detail);
    return true;
  } catch (e) {
    fail(name, e && e.message ? e.message : e);
    if (page) {
      await page
        .screenshot({ path: path.join(opts.out, `failed-${name}.png`), fullPage: true })
        .catch(() => {});
    }
    return false;
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Polls fn() (true = done) every `every` ms for up to `ms`.
async function poll(fn, ms, every = 1000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > end) return false;
    await sleep(every);
  }
}

function watch(page, label) {
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const where = m.location() && m.location().url;
    // A page the server answers with an error status (the login's 401, the 410 of a second
    // download) is logged as a failed resource too: expected, checked by the steps themselves.
    if (/^Failed to load resource/.test(m.text()) && where && expectedErrors.has(where)) return;
    problems.push(`${label}: console: ${m.text()}${where ? ` (${where})` : ""}`);
  });
  page.on("pageerror", (e) => problems.push(`${label}: page error: ${e.message}`));
}

async function sessionCookie(context) {
  return (await context.cookies(opts.url)).find((c) => c.name === COOKIE);
}

async function text(page, testid) {
  return (await page.locator(`[data-testid="${testid}"]`).first().innerText()).trim();
}

// Every page into <out>/<prefix>-<page>.png (whole page); fails on an error status or a page
// wider than the viewport (horizontal scrolling).
async function shootAll(pg, prefix) {
  const bad = [];
  for (const [name, p] of PAGES) {
    const resp = await pg.goto(`${opts.url}${p}`);
    if (!resp || resp.status() !== 200) bad.push(`${p}: HTTP ${resp && resp.status()}`);
    await pg.screenshot({ path: path.join(opts.out, `${prefix}-${name}.png`), fullPage: true });
    const [scroll, inner] = await pg.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    if (scroll > inner + 1) bad.push(`${p} overflows: ${scroll}px wide in a ${inner}px viewport`);
  }
  check(bad.length === 0, bad.join("; "));
  return `${PAGES.length} pages, no horizontal overflow at ${pg.viewportSize().width}px`;
}

// ---------------------------------------------------------------------------------------------
// The run

const browser = await chromium.launch({
  executablePath: opts.chromium,
  headless: true,
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

const desktop = await browser.newContext({
  viewport: { width: 1280, height: 800 },
  ignoreHTTPSErrors: true,
  acceptDownloads: true,
});
const page = await desktop.newPage();
watch(page, "desktop");
let phone = null;

try {
  // --- a. login: a wrong password first, then the right one
  const loggedIn = await step("login", page, async () => {
    const resp = await page.goto(`${opts.url}/users`);
    check(resp, "no response from the server");
    check(new URL(page.url()).pathname === "/login", `/users did not redirect to /login (at ${page.url()})`);
    await page.fill("#username", opts.admin);
    await page.fill("#password", `${opts.password}-wrong`);
    await Promise.all([page.waitForNavigation(), page.click('[data-testid="login-submit"]')]);
    await page.locator('[data-testid="error"]').waitFor({ timeout: 5000 });
    const err = await text(page, "error");
    check(err.length > 0, "empty error message after a wrong password");
    check(!(await sessionCookie(desktop)), "a session cookie was set after a wrong password");
    await page.screenshot({ path: path.join(opts.out, "desktop-login-error.png") });
    pass("login-wrong-password", `error shown: "${err}"`);

    await page.fill("#username", opts.admin);
    await page.fill("#password", opts.password);
    await Promise.all([page.waitForNavigation(), page.click('[data-testid="login-submit"]')]);
    check(new URL(page.url()).pathname === "/users", `not back at /users after the login (at ${page.url()})`);
    const cookie = await sessionCookie(desktop);
    check(cookie, `no ${COOKIE} cookie after the login`);
    check(cookie.secure && cookie.httpOnly && cookie.sameSite === "Strict", "the session cookie is not Secure/HttpOnly/SameSite=Strict");
    check((await text(page, "admin-name")) === opts.admin, "the page does not name the admin");
    return `as ${opts.admin}`;
  });
  if (!loggedIn) throw new Error("cannot go on without a login");

  // --- b. add a user through the form
  await step("add-user", page, async () => {
    await page.goto(`${opts.url}/users`);
    const form = page.locator('[data-testid="user-form"]');
    await form.locator('input[name="name"]').fill(opts.newUser);
    await form.locator('input[name="password"]').fill(`E2e-${Date.now()}-pw`);
    await form.locator('input[name="static_ip"]').fill("");
    await Promise.all([page.waitForNavigation(), page.click('[data-testid="user-add-button"]')]);
    if (await page.locator('[data-testid="error"]').count()) {
      throw new Error(`the server refused: ${await text(page, "error")}`);
    }
    const flash = await text(page, "flash");
    check(flash.includes(opts.newUser), `unexpected flash "${flash}"`);
    const row = page.locator(`tr[data-testid="user-row"][data-user="${opts.newUser}"]`);
    check((await row.count()) === 1, `${opts.newUser} is not in the user list`);
    return opts.newUser;
  });

  // --- c. issue a certificate, download both .p12 files once
  await step("issue-cert", page, async () => {
    await page.goto(`${opts.url}/certs`);
    const form = page.locator('[data-testid="cert-issue-form"]');
    await form.locator('select[name="kind"]').selectOption("user");
    await form.locator('input[name="common_name"]').fill(opts.newUser);
    await form.locator('select[name="user"]').selectOption(opts.newUser);
    await form.locator('input[name="validity_days"]').fill("30");
    await Promise.all([page.waitForNavigation(), page.click('[data-testid="cert-issue-button"]')]);
    if (await page.locator('[data-testid="error"]').count()) {
      throw new Error(`the server refused: ${await text(page, "error")}`);
    }
    check(/\/certs\/issued\//.test(page.url()), `not on the issued page (at ${page.url()})`);
    const password = await text(page, "p12-password");
    check(password.length >= 8, `implausible one-time password "${password}"`);
    const issuedUrl = page.url();
    await page.screenshot({ path: path.join(opts.out, "desktop-cert-issued.png"), fullPage: true });

    const files = {};
    for (const kind of ["legacy", "aes"]) {
      const link = page.locator(`[data-testid="download-${kind}"]`);
      const href = new URL(await link.getAttribute("href"), opts.url).href;
      const [dl] = await Promise.all([page.waitForEvent("download"), link.click()]);
      const failure = await dl.failure();
      check(!failure, `the ${kind} download failed: ${failure}`);
      const name = dl.suggestedFilename();
      check(name.endsWith(".p12"), `the ${kind} download is called ${name}`);
      const file = path.join(downloads, `${kind}-${name}`);
      await dl.saveAs(file);
      const size = fs.statSync(file).size;
      check(size > 0, `the ${kind} file is empty`);
      files[kind] = { file, href, size, name };
    }

    if (opts.p12Check) {
      const env = { ...process.env, RG_P12_PASS: password };
      const run = (args) =>
        execFileSync("openssl", ["pkcs12", "-info", "-noout", ...args, "-passin", "env:RG_P12_PASS"], {
          env,
          stdio: ["ignore", "pipe", "pipe"],
        });
      try {
        run(["-legacy", "-in", files.legacy.file]);
      } catch (e) {
        throw new Error(`openssl pkcs12 -legacy rejects ${files.legacy.name}: ${String(e.stderr || e).trim()}`);
      }
      try {
        run(["-in", files.aes.file]);
      } catch (e) {
        throw new Error(`openssl pkcs12 rejects ${files.aes.name}: ${String(e.stderr || e).trim()}`);
      }
      pass("p12-openssl", `${files.legacy.name} (legacy) and ${files.aes.name} (AES) open with the password`);
    } else {
      console.log("SKIP p12-openssl (--no-p12-check)");
    }

    // Each file once: the same URL again is refused, and the page no longer offers it.
    for (const kind of ["legacy", "aes"]) {
      const again = await page.request.get(files[kind].href, { maxRedirects: 0 });
      check(again.status() === 410, `a second ${kind} download got HTTP ${again.status()}, not 410`);
    }
    await page.goto(issuedUrl);
    check((await page.locator('[data-testid="download-legacy"], [data-testid="download-aes"]').count()) === 0,
      "the issued page still offers a downloaded file");
    check((await page.locator('[data-testid="p12-password"]').count()) === 0, "the one-time password is shown twice");
    check((await page.locator('[data-testid="p12-password-gone"]').count()) === 1, "no note that the password is gone");
    pass("p12-download-once", "second downloads get 410, the password is not shown again");

    await page.goto(`${opts.url}/certs`);
    const listed = await page.locator('tr[data-testid="cert-row"]', { hasText: opts.newUser }).count();
    check(listed >= 1, `no certificate row for ${opts.newUser}`);
    return `legacy ${files.legacy.size} bytes, AES ${files.aes.size} bytes`;
  });

  // --- e. screenshots at 1280x800 and on a phone (390x844), no horizontal overflow on the phone
  await step("screenshots-desktop", page, () => shootAll(page, "desktop"));

  phone = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    ignoreHTTPSErrors: true,
    storageState: await desktop.storageState(),
  });
  const mobile = await phone.newPage();
  watch(mobile, "phone");
  await step("screenshots-phone", mobile, () => shootAll(mobile, "phone"));

  // --- d. disconnect the live session of the expected VPN user
  if (opts.liveUser) {
    await step("disconnect", page, async () => {
      const findRow = async () => {
        await page.goto(`${opts.url}/`);
        return page.evaluate((user) => {
          for (const tr of document.querySelectorAll('tr[data-testid="session-row"]')) {
            const who = tr.querySelector('td[data-label="User"] strong');
            if (who && who.textContent.trim() === user) return tr.getAttribute("data-session-id");
          }
          return null;
        }, opts.liveUser);
      };
      let id = null;
      const found = await poll(async () => (id = await findRow()) !== null, 30000, 2000);
      check(found, `no session row for ${opts.liveUser} within 30 s`);
      await page.screenshot({ path: path.join(opts.out, "desktop-dashboard-live.png"), fullPage: true });

      let question = null;
      page.once("dialog", async (d) => {
        question = `${d.type()}: ${d.message()}`;
        await d.accept();
      });
      const row = page.locator(`tr[data-testid="session-row"][data-session-id="${id}"]`);
      await Promise.all([page.waitForNavigation(), row.locator('[data-testid="disconnect-button"]').click()]);
      check(question && question.startsWith("confirm:"), "no confirm() dialog before the disconnect (is app.js running?)");
      check(new URL(page.url()).pathname === "/", `not back on the dashboard after the disconnect (at ${page.url()})`);
      if (await page.locator('[data-testid="error"]').count()) {
        throw new Error(`the server refused: ${await text(page, "error")}`);
      }
      const flash = await text(page, "flash");
      const gone = await poll(
        async () => {
          await page.goto(`${opts.url}/`);
          return (await page.locator(`tr[data-testid="session-row"][data-session-id="${id}"]`).count()) === 0;
        },
        30000,
        1000,
      );
      check(gone, `the session row ${id} is still there after 30 s`);
      console.log(`DISCONNECTED ${id}`);
      return `${opts.liveUser} session ${id}; ${question}; "${flash}"`;
    });
  } else {
    console.log("SKIP disconnect (no live VPN user named)");
  }

  // --- f. log out; a protected page then sends to the login
  await step("logout", page, async () => {
    await page.goto(`${opts.url}/`);
    await Promise.all([page.waitForNavigation(), page.click('[data-testid="logout-button"]')]);
    check(new URL(page.url()).pathname === "/login", `not on /login after logging out (at ${page.url()})`);
    check(!(await sessionCookie(desktop)), "the session cookie is still set after logging out");
    await page.goto(`${opts.url}/users`);
    check(new URL(page.url()).pathname === "/login", `/users did not redirect to /login (at ${page.url()})`);
    // The phone context still holds the old cookie: the server must have ended that session.
    const stale = await phone.newPage();
    await stale.goto(`${opts.url}/settings`);
    check(new URL(stale.url()).pathname === "/login", "the old session cookie still opens /settings");
    await stale.close();
    return "old cookie refused too";
  });
} catch (e) {
  fail("run", e && e.message ? e.message : e);
}

// Console errors include CSP violations (the UI has no inline script or style).
if (problems.length) fail("browser-console", problems.join(" | "));
else pass("browser-console", "no errors, no CSP violations");

await browser.close();
fs.rmSync(downloads, { recursive: true, force: true });
console.log(failures ? `web e2e: ${failures} failure(s); screenshots in ${opts.out}` : `web e2e: all passed; screenshots in ${opts.out}`);
process.exit(failures ? 1 : 0);
