import { describe, expect, it } from "vitest";
import { ApiError, Client } from "../lib/api";

type Seen = { url: string; init: RequestInit | undefined };

function fake(status: number, body: unknown, contentType = "application/problem+json") {
  const seen: Seen[] = [];
  const client = new Client({
    fetch: async (url, init) => {
      seen.push({ url, init });
      const text = typeof body === "string" ? body : JSON.stringify(body);
      return new Response(status === 204 ? null : text, { status, headers: { "content-type": contentType } });
    },
  });
  return { client, seen };
}

describe("the API client", () => {
  it("reads JSON and sends the CSRF token with changes only", async () => {
    const { client, seen } = fake(200, { ok: true }, "application/json");
    client.setCsrf("tok");
    expect(await client.get("/api/v1/pipelines")).toEqual({ ok: true });
    await client.post("/api/v1/pipelines/1/start", { a: 1 });
    const get = new Headers(seen[0]?.init?.headers);
    const post = new Headers(seen[1]?.init?.headers);
    expect(get.get("x-csrf-token")).toBeNull();
    expect(post.get("x-csrf-token")).toBe("tok");
    expect(post.get("content-type")).toBe("application/json");
    expect(seen[1]?.init?.body).toBe('{"a":1}');
    expect(seen[1]?.init?.credentials).toBe("same-origin");
  });

  it("turns a problem+json answer into its detail, title and fields", async () => {
    const { client } = fake(422, {
      type: "https://philotes.dev/problems/invalid",
      title: "Invalid request",
      status: 422,
      detail: "the body has 1 problem",
      errors: [{ field: "port", message: "1 to 65535" }, { nonsense: true }],
    });
    const err = await client.get("/x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect(e.message).toBe("the body has 1 problem");
    expect(e.title).toBe("Invalid request");
    expect(e.fields).toEqual([{ field: "port", message: "1 to 65535" }]);
    expect(e.unreachable).toBe(false);
  });

  it("knows an unauthenticated answer and an unreachable API", async () => {
    const e401 = (await fake(401, { title: "Unauthenticated", status: 401, detail: "log in" }).client.get("/x").catch((e: unknown) => e)) as ApiError;
    expect(e401.unauthenticated).toBe(true);
    const e502 = (await fake(502, { title: "The API is unreachable", status: 502, detail: "start philotes api" }).client.get("/x").catch((e: unknown) => e)) as ApiError;
    expect(e502.unreachable).toBe(true);
    expect(e502.message).toBe("start philotes api");
  });

  it("says something useful when the answer is not a problem", async () => {
    const e = (await fake(500, "<html>boom</html>", "text/html").client.get("/x").catch((e: unknown) => e)) as ApiError;
    expect(e.message).toBe("The API answered 500: <html>boom</html>");
    const down = new Client({ fetch: async () => { throw new TypeError("fetch failed"); } });
    const e0 = (await down.get("/x").catch((e: unknown) => e)) as ApiError;
    expect(e0.status).toBe(0);
    expect(e0.unreachable).toBe(true);
    expect(e0.message).toContain("fetch failed");
  });
});
