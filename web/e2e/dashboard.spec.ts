// The dashboard in a real browser against the real `philotes api` on a real PostgreSQL
// (started by tests/e2e/test_dashboard.py, which passes what it made in the environment).

import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this suite through tests/e2e/test_dashboard.py`);
  return v;
}

const USER = () => env("E2E_USER");
const PASSWORD = () => env("E2E_PASSWORD");

async function signIn(page: Page) {
  await page.goto("/");
  await expect(page).toHaveURL(/\/login\?next=%2F$/);
  await page.getByLabel("User name").fill(USER());
  await page.getByLabel("Password").fill(PASSWORD());
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("heading", { name: "Pipelines" })).toBeVisible();
}

async function noAxeViolations(page: Page) {
  const result = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  expect(result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`)).toEqual([]);
}

test("a wrong password shows the API's words; the right one signs in; sign out ends it", async ({ page }) => {
  await page.goto("/");
  await expect(page).toHaveURL(/\/login/);
  await noAxeViolations(page);
  await page.getByLabel("User name").fill(USER());
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.locator("#login-error")).toContainText(/password/i);
  await expect(page).toHaveURL(/\/login/);

  await page.getByLabel("Password").fill(PASSWORD());
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("heading", { name: "Pipelines" })).toBeVisible();
  await expect(page.getByText(`${USER()} (admin)`)).toBeVisible();

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login/);
  await page.goto("/");
  await expect(page).toHaveURL(/\/login/);

  // With the keyboard alone: Tab to each field, Enter to sign in, Tab through the navigation.
  await expect(page.getByLabel("User name")).toBeVisible();
  await page.keyboard.press("Tab");
  await expect(page.getByLabel("User name")).toBeFocused();
  await page.keyboard.type(USER());
  await page.keyboard.press("Tab");
  await expect(page.getByLabel("Password")).toBeFocused();
  await page.keyboard.type(PASSWORD());
  await page.keyboard.press("Enter");
  await expect(page.getByRole("heading", { name: "Pipelines" })).toBeVisible();
  await page.keyboard.press("Tab");
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Overview" })).toBeFocused();
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await expect(page.getByRole("heading", { name: "Sources", exact: true })).toBeVisible();
});

test("the overview lists every pipeline, puts what needs a person on top, and refreshes by itself", async ({ page, request }) => {
  await signIn(page);
  const shop = page.locator('tr[data-pipeline="shop"]');
  await expect(shop).toContainText("running");
  await expect(page.locator('tr[data-pipeline="broken"]')).toBeVisible();
  // The pipeline whose source does not answer is at the top, in the API's words.
  const attention = page.getByRole("region", { name: "Needs attention" });
  await expect(attention).toContainText("broken");
  await expect(attention).toContainText("cannot reach the source");
  await noAxeViolations(page);

  // A change made elsewhere shows up without a page load.
  await page.evaluate(() => {
    (window as unknown as { __stay: boolean }).__stay = true;
  });
  const broken = page.locator('tr[data-pipeline="broken"]');
  await expect(broken).toContainText("running");
  const paused = await request.post(`${env("E2E_API_URL")}/api/v1/pipelines/${env("E2E_BROKEN_ID")}/pause`, {
    headers: { Authorization: `Bearer ${env("E2E_API_KEY")}` },
  });
  expect(paused.status()).toBe(200);
  await expect(broken).toContainText("paused", { timeout: 20_000 });
  expect(await page.evaluate(() => (window as unknown as { __stay?: boolean }).__stay)).toBe(true);
});

test("a phone-width screen and the dark theme", async ({ browser }) => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: "dark" });
  const page = await context.newPage();
  await signIn(page);
  await expect(page.locator('tr[data-pipeline="shop"]')).toBeVisible();
  // Nothing spills past the screen: the table scrolls inside its own box.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(background).toBe("rgb(18, 20, 24)");
  // The viewer's own choice wins over the system's.
  await page.getByRole("button", { name: /^Theme: system/ }).click();
  await expect.poll(() => page.evaluate(() => getComputedStyle(document.body).backgroundColor)).toBe("rgb(255, 255, 255)");
  await noAxeViolations(page);
  await context.close();
});

test("when the API cannot be reached, the page says so and what to do", async ({ page }) => {
  await page.goto(`${env("E2E_DOWN_URL")}/`);
  await expect(page.getByRole("heading", { name: "Philotes cannot be reached" })).toBeVisible();
  await expect(page.getByRole("main")).toContainText("PHILOTES_API_URL");
  await expect(page.getByRole("button", { name: "Try again" })).toBeVisible();
});

test("the bad day: a stopped table, its dead letter skipped with a note, verify, resync", async ({ page }) => {
  test.setTimeout(300_000);
  await signIn(page);
  await page.locator('tr[data-pipeline="shop"]').getByRole("link", { name: "shop" }).click();
  await expect(page).toHaveURL(new RegExp(`/pipelines/${env("E2E_SHOP_ID")}$`));
  const prices = page.locator('tr[data-table="public.prices"]');
  const orders = page.locator('tr[data-table="public.orders"]');
  await expect(orders).toContainText("streaming");
  await expect(prices).toContainText("stopped");
  await expect(prices).toContainText("cannot convert");
  await expect(prices).toContainText("fix the value on the source and resync the table");
  await expect(page.getByRole("region", { name: "Needs attention" })).toContainText("table public.prices stopped");
  await page.getByRole("link", { name: "Pipelines" }).click();
  await expect(page.getByRole("region", { name: "Needs attention" })).toContainText("1 open dead letter");
  await page.locator('tr[data-pipeline="shop"]').getByRole("link", { name: "shop" }).click();
  // Charts from the API's history (sampled every second in this test), over a chosen range.
  await expect(page.getByRole("img", { name: /^Into the lake: now .* changes\/s/ })).toBeVisible({ timeout: 30_000 });
  await expect(page.getByRole("img", { name: /^Buffered changes: now/ })).toBeVisible();
  await page.getByLabel("History over the").selectOption("168");
  await expect(page.getByRole("img", { name: /^Lag: now/ })).toBeVisible();
  await noAxeViolations(page);

  // Verify while the table is stopped: it cannot reach the verification point, and says why
  // and what to do.
  await page.getByRole("button", { name: "Verify", exact: true }).click();
  await expect(page.getByRole("dialog")).toContainText("Compares every table");
  await page.getByRole("dialog").getByRole("button", { name: "Verify" }).click();
  const run = page.locator("[data-verify-run]");
  await expect(run).toHaveAttribute("data-state", "failed", { timeout: 120_000 });
  await expect(run).toContainText("table public.prices is stopped");
  await expect(run).toContainText("dlq");

  // The dead letter: its row, its column, the error.
  await page.getByRole("link", { name: "Dead letters" }).click();
  const open = page.locator("[data-letter]").filter({ hasText: "(open)" });
  await expect(open).toHaveCount(1);
  await expect(open).toContainText("public.prices");
  await expect(open).toContainText("column p");
  await expect(open.getByLabel(/The row of dead letter/)).toContainText("NaN");

  // Retry, after a confirmation that says what it can and cannot mend: the buffered change
  // still holds NaN, so the table tries it, fails again, and the letter is open again.
  await open.getByRole("button", { name: /^Retry #/ }).click();
  await expect(page.getByRole("dialog")).toContainText("comes back the same");
  await page.getByRole("dialog").getByRole("button", { name: "Retry" }).click();
  await expect(page.getByRole("dialog")).toBeHidden();
  await expect(open).toHaveCount(1, { timeout: 60_000 });
  await expect(open.getByLabel(/The row of dead letter/)).toContainText("NaN");

  // So it is skipped, with a note, after a confirmation.
  const letter = open.first();
  await letter.getByLabel(/Note/).fill("NaN from the old importer; fixed in the source");
  await letter.getByRole("button", { name: /^Skip #/ }).click();
  await expect(page.getByRole("dialog")).toContainText("left out of the lake");
  await page.getByRole("dialog").getByRole("button", { name: "Skip this change" }).click();
  const skipped = page.locator("[data-letter]").filter({ hasText: "(skipped)" });
  await expect(skipped).toHaveCount(1);
  await expect(skipped).toContainText("NaN from the old importer");
  await expect(open).toHaveCount(0);
  await noAxeViolations(page);

  // The table goes on; verify now finds the lake equal to the source.
  await page.getByRole("link", { name: "pipeline", exact: true }).click();
  await expect(prices).toContainText("streaming", { timeout: 60_000 });
  // Its copy and the changes after the skipped one, among the recent commits.
  const recent = page.getByRole("region", { name: "Recent commits" });
  await expect(recent.locator('tr[data-commit="public.prices"]').filter({ hasText: "changes" }).first()).toBeVisible({ timeout: 30_000 });
  await expect(recent.locator('tr[data-commit="public.orders"]').filter({ hasText: "copy" })).toContainText("50");
  await page.getByRole("button", { name: "Verify", exact: true }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Verify" }).click();
  await expect(page.locator("[data-outcome]")).toHaveAttribute("data-outcome", "match", { timeout: 120_000 });

  // Resync one table, after a confirmation that says what it does.
  await prices.getByRole("button", { name: "Resync public.prices" }).click();
  await expect(page.getByRole("dialog")).toContainText("copies the table again");
  await page.getByRole("dialog").getByRole("button", { name: "Resync" }).click();
  await expect(page.getByRole("status")).toContainText("public.prices is copied again");
  await expect(prices).toContainText("streaming", { timeout: 120_000 });
});

test("a source whose checks fail shows the fix to copy; one that passes says so; its tables", async ({ browser }) => {
  const context = await browser.newContext({ permissions: ["clipboard-read", "clipboard-write"] });
  const page = await context.newPage();
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Sources" }).click();
  await expect(page.getByRole("heading", { name: "Sources", exact: true })).toBeVisible();

  const add = async (name: string, user: string, database: string, port = env("E2E_SOURCE_PORT")) => {
    await page.getByLabel(/^Name/).fill(name);
    await page.getByLabel("Host").fill(env("E2E_SOURCE_HOST"));
    await page.getByLabel("Port").fill(port);
    await page.getByLabel("Database").fill(database);
    await page.getByLabel(/^User/).fill(user);
    await page.getByLabel(/^Password/).fill("any-Passw0rd");
    await page.getByLabel(/sslmode/).selectOption("disable");
    await page.getByRole("button", { name: "Add and test" }).click();
  };

  // A user without the replication privilege: the check fails, with the statement that fixes it.
  await add("norep", "norep", env("E2E_SOURCE_DB"));
  const privilege = page.locator('[data-check="replication_privilege"]');
  await expect(privilege).toHaveAttribute("data-ok", "false");
  await expect(privilege).toContainText("may not replicate");
  await expect(privilege.locator("code")).toHaveText(`ALTER ROLE "norep" WITH REPLICATION`);
  await privilege.getByRole("button", { name: /Copy the fix/ }).click();
  await expect(privilege).toContainText("copied");
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`ALTER ROLE "norep" WITH REPLICATION`);
  await expect(page.locator('[data-check="connect"]')).toHaveAttribute("data-ok", "true");
  await noAxeViolations(page);

  // Bad input the browser lets through: the API refuses it, in its words, on the field.
  await add("bad-port", "postgres", env("E2E_EXTRA_DB"), "70000");
  await expect(page.locator("#source-port-error")).toContainText("70000 is out of range");
  await expect(page.getByLabel("Port")).toHaveAttribute("aria-invalid", "true");
  await expect(page.locator('tr[data-source="bad-port"]')).toHaveCount(0);

  // A user who may: every check passes.
  await add("extra", "postgres", env("E2E_EXTRA_DB"));
  await expect(page.locator("[data-test-ok]")).toHaveAttribute("data-test-ok", "true");
  await expect(page.getByRole("heading", { name: /Every check passed/ })).toBeVisible();
  await expect(page.locator('tr[data-source="extra"]')).toBeVisible();

  // Its tables: a keyless one says why and how to fix it.
  await page.getByRole("status").getByRole("link", { name: "extra" }).click();
  const events = page.locator('tr[data-table="public.events"]');
  await expect(events).toContainText("no primary key");
  await expect(events.locator("code")).toContainText("REPLICA IDENTITY FULL");
  await expect(page.locator('tr[data-table="public.items"]')).toContainText("ready");
  await expect(page.locator('tr[data-table="public.items"]')).toContainText("primary key");
  await noAxeViolations(page);
  await context.close();
});

test("settings: an API key shown once, then revoked; a viewer who can watch, not act; the audit log", async ({ browser, request }) => {
  const context = await browser.newContext({ permissions: ["clipboard-read", "clipboard-write"] });
  const page = await context.newPage();
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
  await expect(page.getByRole("heading", { name: "Settings" })).toBeVisible();

  await page.getByLabel("Name", { exact: true }).fill("grafana");
  await page.getByLabel("Scope").selectOption("read");
  await page.getByRole("button", { name: "Create key" }).click();
  const made = page.locator("[data-new-key]");
  await expect(made).toContainText("not shown again");
  const token = (await made.locator("code").textContent()) ?? "";
  expect(token).toMatch(/^phk_/);
  await made.getByRole("button", { name: "Copy the new API key" }).click();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(token);
  const me = await request.get(`${env("E2E_API_URL")}/api/v1/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
  expect(me.status()).toBe(200);
  expect((await me.json()).scope).toBe("read");
  await expect(page.locator('tr[data-key="grafana"]')).toContainText("never");
  await page.reload();
  await expect(page.locator('tr[data-key="grafana"]')).toBeVisible();
  await expect(page.locator("[data-new-key]")).toHaveCount(0);
  await expect(page.getByText(token)).toHaveCount(0);

  await page.locator('tr[data-key="grafana"]').getByRole("button", { name: "Revoke grafana" }).click();
  await expect(page.getByRole("dialog")).toContainText("refused from now on");
  await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
  await expect(page.locator('tr[data-key="grafana"]')).toContainText("revoked");
  const refused = await request.get(`${env("E2E_API_URL")}/api/v1/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
  expect(refused.status()).toBe(401);

  // A viewer: added here, signs in, sees the pipelines, and cannot act on them.
  await page.getByLabel("User name").fill("vera");
  await page.getByLabel("Role", { exact: true }).selectOption("viewer");
  await page.getByLabel(/^Password/).fill("viewer-Passw0rd-e2e");
  await page.getByRole("button", { name: "Add person" }).click();
  await expect(page.getByRole("status").filter({ hasText: "vera can sign in now" })).toBeVisible();
  await expect(page.getByRole("region", { name: "Audit log table" })).toContainText("api-key.revoke");
  await expect(page.getByRole("region", { name: "Audit log table" })).toContainText("user.create");
  await noAxeViolations(page);
  await context.close();

  const viewer = await (await browser.newContext()).newPage();
  await viewer.goto("/login");
  await viewer.getByLabel("User name").fill("vera");
  await viewer.getByLabel("Password").fill("viewer-Passw0rd-e2e");
  await viewer.getByRole("button", { name: "Sign in" }).click();
  await expect(viewer.getByText("vera (read)")).toBeVisible();
  await expect(viewer.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" })).toHaveCount(0);
  await viewer.goto(`/pipelines/${env("E2E_SHOP_ID")}`);
  await expect(viewer.getByText("Your role can watch, not act.")).toBeVisible();
  await expect(viewer.locator('tr[data-table="public.orders"]')).toBeVisible();
  for (const name of ["Pause", "Resume", "Stop", "Start", "Verify", "Resync public.orders"]) {
    await expect(viewer.getByRole("button", { name, exact: true })).toHaveCount(0);
  }
  // And the API refuses a change from this session anyway, with the session's own CSRF token.
  const refusedByApi = await viewer.evaluate(async (id) => {
    const me = (await (await fetch("/api/v1/auth/me")).json()) as { csrf_token: string };
    const r = await fetch(`/api/v1/pipelines/${id}/pause`, { method: "POST", headers: { "X-CSRF-Token": me.csrf_token } });
    return [r.status, ((await r.json()) as { detail: string }).detail];
  }, env("E2E_SHOP_ID"));
  expect(refusedByApi[0]).toBe(403);
  expect(refusedByApi[1]).toContain("operate");
});

test("a pipeline made with the wizard copies its table and streams", async ({ page }) => {
  test.setTimeout(180_000);
  await signIn(page);
  await page.getByRole("link", { name: "New pipeline" }).click();
  await expect(page.getByRole("heading", { name: "New pipeline" })).toBeVisible();
  const next = page.getByRole("button", { name: "Next" });
  await expect(next).toBeDisabled();
  await expect(page.getByRole("status").filter({ hasText: "Choose a source." })).toBeVisible();
  await page.getByLabel(/^extra/).check();
  await next.click();

  // Tables: a search, and the keyless table flagged with its fix once chosen.
  await expect(page.locator('[data-table="public.items"]')).toBeVisible();
  await expect(next).toBeDisabled();
  await page.getByLabel("Search tables").fill("event");
  await expect(page.locator('[data-table="public.items"]')).toHaveCount(0);
  await page.getByLabel(/^public\.events/).check();
  await expect(page.getByRole("note")).toContainText("REPLICA IDENTITY FULL");
  await page.getByLabel(/^public\.events/).uncheck();
  await page.getByLabel("Search tables").fill("");
  await page.getByLabel(/^public\.items/).check();
  await next.click();

  // Destination: the workers' embedded catalog.
  await page.getByLabel(/embedded SQL catalog/).check();
  await next.click();
  await page.getByLabel("Name", { exact: true }).fill("Extra!");
  await expect(next).toBeDisabled();
  await page.getByLabel("Name", { exact: true }).fill("extra");
  await page.getByLabel(/Flush interval/).fill("200ms");
  await next.click();
  await expect(page.locator('[data-review="tables"]')).toHaveText("public.items");
  await noAxeViolations(page);
  await page.getByRole("button", { name: "Create and start" }).click();

  // The new pipeline's page: the managed ingest copies the table (2,000,000 rows, while rows keep
  // arriving on the source), with its progress, then it streams.
  await expect(page.getByRole("heading", { name: /^extra/ })).toBeVisible();
  const items = page.locator('tr[data-table="public.items"]');
  await expect(items).toContainText("copying", { timeout: 60_000 });
  await expect(items).toContainText(/rows\/s/);
  await expect(items).toContainText("streaming", { timeout: 120_000 });
  await expect(page.getByRole("heading", { name: /^extra/ })).toContainText("running");
});

test("screenshots of the main pages, light and dark", async ({ browser }) => {
  // Saved by every run (web/test-results/screenshots/, kept by CI as an artifact); the README's
  // pictures are copies of these.
  for (const scheme of ["light", "dark"] as const) {
    const context = await browser.newContext({ colorScheme: scheme, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await signIn(page);
    const shot = async (name: string) =>
      page.screenshot({ path: `test-results/screenshots/${name}-${scheme}.png`, fullPage: true });
    await expect(page.locator('tr[data-pipeline="shop"]')).toBeVisible();
    await shot("overview");
    await page.goto(`/pipelines/${env("E2E_SHOP_ID")}`);
    await expect(page.getByRole("img", { name: /^Into the lake: now/ })).toBeVisible({ timeout: 30_000 });
    await shot("pipeline");
    await page.goto(`/pipelines/${env("E2E_SHOP_ID")}/dead-letters`);
    await expect(page.locator("[data-letter]").first()).toBeVisible();
    await shot("dead-letters");
    await page.goto("/sources");
    await expect(page.locator('tr[data-source="extra"]')).toBeVisible();
    await shot("sources");
    await page.goto("/pipelines/new");
    await expect(page.getByRole("heading", { name: "New pipeline" })).toBeVisible();
    await shot("new-pipeline");
    await page.goto("/settings");
    await expect(page.getByRole("region", { name: "Audit log table" })).toBeVisible();
    await shot("settings");
    await context.close();
  }
});
