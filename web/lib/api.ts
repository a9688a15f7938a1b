// The dashboard's only way to Philotes: `philotes api`, reached through the dashboard's own
// /api route. Every failure becomes an ApiError whose message is the API's problem+json
// `detail` (what went wrong and what to do), or, when the API cannot be reached at all, a
// sentence saying so.

export interface FieldProblem {
  field: string;
  message: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly title: string;
  readonly fields: FieldProblem[];
  readonly errorId: string | undefined;

  constructor(status: number, title: string, detail: string, fields: FieldProblem[] = [], errorId?: string) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.title = title;
    this.fields = fields;
    this.errorId = errorId;
  }

  /** The API itself is not answering (the dashboard's proxy says 502/503/504, or the network failed). */
  get unreachable(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }

  /** Not logged in, or the session ended. */
  get unauthenticated(): boolean {
    return this.status === 401;
  }
}

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** Where the API's paths start (the dashboard's proxy): "" in the browser. */
  base?: string;
  fetch?: Fetch;
}

/** A client of `philotes api` that remembers the session's CSRF token for changes. */
export class Client {
  private readonly base: string;
  private readonly fetcher: Fetch;
  private csrf: string | undefined;

  constructor(options: ClientOptions = {}) {
    this.base = options.base ?? "";
    this.fetcher = options.fetch ?? ((input, init) => fetch(input, init));
  }

  setCsrf(token: string | undefined): void {
    this.csrf = token;
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const safe = method === "GET" || method === "HEAD";
    if (!safe && this.csrf) headers["X-CSRF-Token"] = this.csrf;
    let res: Response;
    try {
      res = await this.fetcher(`${this.base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(
        0,
        "Unreachable",
        `The dashboard cannot be reached (${e instanceof Error ? e.message : String(e)}). Check your network and that the dashboard runs.`,
      );
    }
    const text = await res.text();
    let json: unknown = undefined;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    if (!res.ok) {
      throw problemOf(res.status, json, text);
    }
    return json as T;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>("GET", path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.call<T>("POST", path, body);
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>("PATCH", path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.call<T>("DELETE", path);
  }
}

function problemOf(status: number, json: unknown, text: string): ApiError {
  if (json && typeof json === "object") {
    const p = json as Record<string, unknown>;
    const detail = typeof p.detail === "string" ? p.detail : undefined;
    const title = typeof p.title === "string" ? p.title : `HTTP ${status}`;
    const fields = Array.isArray(p.errors)
      ? p.errors.filter(
          (f): f is FieldProblem =>
            !!f && typeof f === "object" && typeof (f as FieldProblem).field === "string" && typeof (f as FieldProblem).message === "string",
        )
      : [];
    const errorId = typeof p.error_id === "string" ? p.error_id : undefined;
    if (detail) return new ApiError(status, title, detail, fields, errorId);
  }
  const snippet = text.trim().slice(0, 200);
  return new ApiError(status, `HTTP ${status}`, snippet ? `The API answered ${status}: ${snippet}` : `The API answered ${status} with no explanation.`);
}

/** The client the pages share. */
export const api = new Client();

// What the pages read. Only the fields the dashboard uses; the API's OpenAPI document
// (docs/api/openapi.json) has them all.

export type PipelineState = "stopped" | "running" | "paused" | "failed" | string;

export interface Pipeline {
  id: number;
  name: string;
  source_id: number;
  slot: string;
  tables: string[];
  state: PipelineState;
  created_at: string;
  updated_at: string;
}

export interface Page<T> {
  items: T[];
  next?: string | null;
}

export interface TableStatus {
  name: string;
  state: string;
  stopped_reason: string | null;
  buffered_changes: number;
  lag_seconds: number;
  rows_copied: number;
  copy_started_at: string | null;
  source_rows_estimate: number | null;
  changes_in_lake: number;
  last_commit_at: string | null;
}

export interface SlotStatus {
  active: boolean;
  retained_bytes: number | null;
  wal_status: string | null;
  safe_wal_bytes: number | null;
}

export interface PipelineStatus {
  state: PipelineState;
  buffer_depth: number;
  lag_seconds: number;
  last_commit_at: string | null;
  workers: string[];
  slot: SlotStatus | null;
  source_error: string | null;
  tables: TableStatus[];
}

export interface HistorySample {
  at: string;
  lake_changes_per_second: number | null;
  buffered_changes_per_second: number | null;
  buffer_depth: number;
  lag_seconds: number;
}

export interface Me {
  actor: string;
  scope: "read" | "operate" | "admin";
  csrf_token?: string;
}

export interface Session {
  username: string;
  role: string;
  csrf_token: string;
  expires_at: string;
}

export interface DifferentRow {
  key: string;
  columns: string[];
}

export interface TableReport {
  table: string;
  status: "match" | "different" | "not_verified";
  source_rows: number;
  lake_rows: number;
  missing: number;
  extra: number;
  different: number;
  first_missing: string[];
  first_extra: string[];
  first_different: DifferentRow[];
  reason?: string | null;
}

export interface VerifyReport {
  lsn: string;
  status: "match" | "different" | "not_verified";
  tables: TableReport[];
}

export interface VerifyRun {
  id: number;
  tables: string[];
  requested_at: string;
  requested_by: string;
  started_at: string | null;
  finished_at: string | null;
  state: "pending" | "running" | "done" | "failed";
  outcome: string | null;
  report: VerifyReport | null;
  error: string | null;
}

export interface DeadLetter {
  id: number;
  table: string;
  lsn: string;
  position: number | null;
  op: string;
  column: string | null;
  error: string;
  row: Record<string, unknown>;
  time: string;
  state: "open" | "skipped" | "retried";
  note: string | null;
}

/** Path segment of an id taken from the page's URL (never a path of its own). */
export function idPath(id: string | number): string {
  return encodeURIComponent(String(id));
}

export interface Source {
  id: number;
  name: string;
  host: string;
  port: number;
  database: string;
  user: string;
  has_password: boolean;
  sslmode: string;
  created_at: string;
  updated_at: string;
}

export interface Check {
  name: string;
  ok: boolean;
  message?: string;
  fix?: string;
}

export interface SourceTest {
  ok: boolean;
  checks: Check[];
}

export interface SourceTable {
  schema: string;
  name: string;
  replica_identity: string;
  has_primary_key: boolean;
  estimated_rows: number;
  total_bytes: number;
  partitioned: boolean;
  problem?: string;
  fix?: string;
}

export type Scope = "read" | "operate" | "admin";

export interface ApiKey {
  id: string;
  name: string;
  scope: Scope;
  created_at: string;
  created_by: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface ApiKeyCreated {
  key: ApiKey;
  token: string;
}

export interface User {
  id: number;
  username: string;
  role: "viewer" | "operator" | "admin";
  created_at: string;
  last_login_at: string | null;
  disabled_at: string | null;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  resource: string;
  remote: string | null;
  detail: unknown;
}

export interface Commit {
  table: string;
  at: string;
  kind: "stream" | "copy";
  rows: number;
  watermark: string;
  seconds: number | null;
}
