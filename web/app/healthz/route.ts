// The dashboard process is alive (Kubernetes' liveness probe); it does not ask the API.
export const dynamic = "force-dynamic";

export function GET(): Response {
  return Response.json({ status: "ok" });
}
