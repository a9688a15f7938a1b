// The dashboard's door to `philotes api`: the browser talks to the dashboard's own origin, so
// the API's session cookie is first-party (SameSite=Strict holds), and the API's address is
// read at run time (PHILOTES_API_URL), not baked into the build.

import type { NextRequest } from "next/server";

export const dynamic = "force-dynamic";

/** Headers passed on to the API, and back to the browser. Nothing else crosses. The API
 * believes `x-forwarded-for` (the viewer's address, for its login limits and audit log) only
 * from an address in its PHILOTES_API_TRUSTED_PROXIES. */
const TO_API = ["accept", "content-type", "cookie", "x-csrf-token", "idempotency-key", "user-agent", "x-forwarded-for"];
const TO_BROWSER = ["content-type", "set-cookie", "retry-after", "location", "cache-control"];

function apiBase(): string {
  return (process.env.PHILOTES_API_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
}

async function forward(req: NextRequest, ctx: { params: Promise<{ path: string[] }> }): Promise<Response> {
  const { path } = await ctx.params;
  const target = `${apiBase()}/api/${path.map(encodeURIComponent).join("/")}${req.nextUrl.search}`;
  const headers = new Headers();
  for (const name of TO_API) {
    const v = req.headers.get(name);
    if (v !== null) headers.set(name, v);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  let res: Response;
  try {
    res = await fetch(target, {
      method: req.method,
      headers,
      body: hasBody ? await req.arrayBuffer() : undefined,
      redirect: "manual",
      cache: "no-store",
    });
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : String(e);
    return Response.json(
      {
        type: "https://philotes.dev/problems/api-unreachable",
        title: "The API is unreachable",
        status: 502,
        detail: `The dashboard cannot reach philotes api at ${apiBase()} (${cause}). Start it (philotes api) or point PHILOTES_API_URL at it, then reload.`,
      },
      { status: 502, headers: { "content-type": "application/problem+json" } },
    );
  }
  const out = new Headers();
  for (const name of TO_BROWSER) {
    if (name === "set-cookie") {
      for (const c of res.headers.getSetCookie()) out.append("set-cookie", c);
      continue;
    }
    const v = res.headers.get(name);
    if (v !== null) out.set(name, v);
  }
  return new Response(res.status === 204 || res.status === 304 ? null : await res.arrayBuffer(), {
    status: res.status,
    headers: out,
  });
}

export const GET = forward;
export const POST = forward;
export const PATCH = forward;
export const PUT = forward;
export const DELETE = forward;
