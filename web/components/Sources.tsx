"use client";
// The sources: every PostgreSQL database Philotes reads, and a form to add one that tests the
// connection at once with the checks `philotes run` makes, each failure with its fix.

import ScrollTable from "@/components/ScrollTable";
import Link from "next/link";
import { useCallback, useState, type FormEvent } from "react";
import Checks from "@/components/Checks";
import { useMe } from "@/components/Shell";
import { ApiError, api, type Page, type Source, type SourceTest } from "@/lib/api";
import { usePoll } from "@/lib/poll";

const SSL_MODES = ["disable", "prefer", "require", "verify-ca", "verify-full"];

function AddSource({ onAdded }: { onAdded: () => void }) {
  const [form, setForm] = useState({ name: "", host: "", port: "5432", database: "", user: "", password: "", sslmode: "prefer" });
  const [error, setError] = useState<ApiError | Error>();
  const [busy, setBusy] = useState(false);
  const [added, setAdded] = useState<{ source: Source; test: SourceTest }>();
  const set = (k: keyof typeof form) => (e: { target: { value: string } }) => setForm((f) => ({ ...f, [k]: e.target.value }));

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    setAdded(undefined);
    try {
      const source = await api.post<Source>("/api/v1/sources", {
        name: form.name,
        host: form.host,
        port: Number(form.port),
        database: form.database,
        user: form.user,
        password: form.password === "" ? undefined : form.password,
        sslmode: form.sslmode,
      });
      const test = await api.post<SourceTest>(`/api/v1/sources/${source.id}/test`);
      setAdded({ source, test });
      setForm((f) => ({ ...f, password: "" }));
      onAdded();
    } catch (err) {
      setError(err instanceof Error ? err : new Error(String(err)));
    } finally {
      setBusy(false);
    }
  };
  const fieldError = (field: string) =>
    error instanceof ApiError ? error.fields.find((f) => f.field === field)?.message : undefined;
  const field = (k: keyof typeof form, label: string, extra: Record<string, string> = {}) => (
    <>
      <label htmlFor={`source-${k}`}>{label}</label>
      <input id={`source-${k}`} name={k} value={form[k]} onChange={set(k)} aria-invalid={fieldError(k) ? true : undefined}
        aria-describedby={fieldError(k) ? `source-${k}-error` : undefined} {...extra} />
      {fieldError(k) && <div id={`source-${k}-error`} className="muted">{fieldError(k)}</div>}
    </>
  );

  return (
    <section aria-labelledby="add-title">
      <h2 id="add-title">Add a source</h2>
      <form onSubmit={(e) => void submit(e)}>
        {field("name", "Name (a-z, 0-9, - and _)", { required: "", pattern: "[a-z0-9][a-z0-9_\\-]*" })}
        {field("host", "Host", { required: "" })}
        {field("port", "Port", { required: "", inputMode: "numeric" })}
        {field("database", "Database", { required: "" })}
        {field("user", "User (with the REPLICATION attribute)", { required: "", autoComplete: "off" })}
        {field("password", "Password (stored encrypted, never shown again)", { type: "password", autoComplete: "new-password" })}
        <label htmlFor="source-sslmode">TLS (sslmode)</label>
        <select id="source-sslmode" value={form.sslmode} onChange={set("sslmode")}>
          {SSL_MODES.map((m) => (
            <option key={m} value={m}>{m}</option>
          ))}
        </select>
        {error && <p className="alert critical" role="alert">{error.message}</p>}
        <p>
          <button type="submit" className="primary" disabled={busy}>
            {busy ? "Adding and testing…" : "Add and test"}
          </button>
        </p>
      </form>
      {added && (
        <div>
          <p role="status">
            Added <Link href={`/sources/${added.source.id}`}>{added.source.name}</Link>.
          </p>
          <Checks test={added.test} />
        </div>
      )}
    </section>
  );
}

export default function Sources() {
  const me = useMe();
  const { data, error, loading, reload } = usePoll(
    useCallback(() => api.get<Page<Source>>("/api/v1/sources"), []),
    10_000,
  );
  const items = data?.items ?? [];
  return (
    <main>
      <h1>Sources</h1>
      {error && <p className="alert critical" role="alert">{error.message}</p>}
      {loading && !data && <p className="muted" aria-busy="true">Loading sources…</p>}
      {data && items.length === 0 && <p className="muted">No source yet.</p>}
      {items.length > 0 && (
        <ScrollTable label="Sources table" columns={["Source", "Where", "User", "TLS"]}>
          {items.map((s) => (
            <tr key={s.id} data-source={s.name}>
              <th scope="row"><Link href={`/sources/${s.id}`}>{s.name}</Link></th>
              <td>{s.host}:{s.port}/{s.database}</td>
              <td>{s.user}</td>
              <td>{s.sslmode}</td>
            </tr>
          ))}
        </ScrollTable>
      )}
      {me?.scope === "admin" ? <AddSource onAdded={reload} /> : <p className="muted">An admin adds sources.</p>}
    </main>
  );
}
