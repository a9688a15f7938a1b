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
  const paused = await request.post(`${env("E2E_API_URL")}/api/v1/pipelines/${env("E2E_SHOP_ID")}/pause`, {
    headers: { Authorization: `Bearer ${env("E2E_API_KEY")}` },
  });
  expect(paused.status()).toBe(200);
  await expect(shop).toContainText("paused", { timeout: 20_000 });
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
