// Ready when the API answers its /healthz (Kubernetes' readiness probe): a dashboard that cannot
// reach the API takes no traffic, and says why.
export const dynamic = "force-dynamic";

export async function GET(): Promise<Response> {
  const api = (process.env.PHILOTES_API_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  try {
    const res = await fetch(`${api}/healthz`, { cache: "no-store", signal: AbortSignal.timeout(2000) });
    if (res.ok) return Response.json({ status: "ready" });
    return Response.json({ status: "not ready", reason: `philotes api at ${api} answered ${res.status}` }, { status: 503 });
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : String(e);
    return Response.json({ status: "not ready", reason: `cannot reach philotes api at ${api} (${cause})` }, { status: 503 });
  }
}
