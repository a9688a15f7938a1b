"use client";
// The new-pipeline wizard: source → tables → destination → settings → review, then create and
// start. Each step says what is missing before it lets you on; tables without a key are
// flagged with their fix before you pick them.

import Link from "next/link";
import { useRouter } from "next/navigation";
import { useCallback, useEffect, useState } from "react";
import Copy from "@/components/Copy";
import { api, type Page, type Pipeline, type Source, type SourceTable } from "@/lib/api";
import { formatBytes, formatCount } from "@/lib/format";
import { usePoll } from "@/lib/poll";
import { EMPTY_DESTINATION, blocker, createBody, qualified, searchTables, type Draft } from "@/lib/wizard";

const STEPS = ["Source", "Tables", "Destination", "Settings", "Review"];

function Field({ id, label, value, onChange, type = "text", hint }: {
  id: string; label: string; value: string; onChange: (v: string) => void; type?: string; hint?: string;
}) {
  return (
    <>
      <label htmlFor={id}>{label}</label>
      <input id={id} type={type} value={value} onChange={(e) => onChange(e.target.value)}
        aria-describedby={hint ? `${id}-hint` : undefined} autoComplete="off" />
      {hint && <div id={`${id}-hint`} className="muted">{hint}</div>}
    </>
  );
}

export default function NewPipeline() {
  const router = useRouter();
  const [step, setStep] = useState(0);
  const [draft, setDraft] = useState<Draft>({
    sourceId: null, allTables: false, tables: [], destination: { ...EMPTY_DESTINATION }, name: "", namespace: "", flushInterval: "",
  });
  const [search, setSearch] = useState("");
  // The tables of the source they were read from (a choice of another source reads anew).
  const [read, setRead] = useState<{ sourceId: number; tables?: SourceTable[]; error?: string }>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const sources = usePoll(useCallback(() => api.get<Page<Source>>("/api/v1/sources"), []), 60_000);
  const source = sources.data?.items.find((s) => s.id === draft.sourceId);
  const update = (patch: Partial<Draft>) => setDraft((d) => ({ ...d, ...patch }));
  const dest = (patch: Partial<Draft["destination"]>) => setDraft((d) => ({ ...d, destination: { ...d.destination, ...patch } }));

  useEffect(() => {
    const sourceId = draft.sourceId;
    if (sourceId === null) return;
    let live = true;
    api
      .get<SourceTable[]>(`/api/v1/sources/${sourceId}/tables`)
      .then((t) => live && setRead({ sourceId, tables: t }))
      .catch((e: unknown) => live && setRead({ sourceId, error: e instanceof Error ? e.message : String(e) }));
    return () => {
      live = false;
    };
  }, [draft.sourceId]);
  const current = read?.sourceId === draft.sourceId ? read : undefined;
  const tables = current?.tables;
  const tablesError = current?.error;

  const shown = tables ? searchTables(tables, search) : [];
  const chosen = new Set(draft.tables);
  const toggle = (name: string) =>
    update({ tables: chosen.has(name) ? draft.tables.filter((t) => t !== name) : [...draft.tables, name] });
  const selectShown = () => update({ tables: Array.from(new Set([...draft.tables, ...shown.map(qualified)])) });
  const problems = (tables ?? []).filter((t) => t.problem && (draft.allTables || chosen.has(qualified(t))));
  const stop = blocker(draft, step);

  const create = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const p = await api.post<Pipeline>("/api/v1/pipelines", createBody(draft));
      await api.post(`/api/v1/pipelines/${p.id}/start`);
      router.push(`/pipelines/${p.id}`);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      setBusy(false);
    }
  };

  return (
    <main>
      <p>
        <Link href="/">Pipelines</Link> / new
      </p>
      <h1>New pipeline</h1>
      <ol className="steps" aria-label="Steps">
        {STEPS.map((s, i) => (
          <li key={s} aria-current={i === step ? "step" : undefined} className={i === step ? "current" : ""}>
            {s}
          </li>
        ))}
      </ol>
      <section aria-labelledby="step-title">
        <h2 id="step-title">{STEPS[step]}</h2>
        {step === 0 && (
          <>
            {sources.data && sources.data.items.length === 0 && (
              <p>No source yet: <Link href="/sources">add one</Link> first.</p>
            )}
            <fieldset>
              <legend>Which database to replicate</legend>
              {sources.data?.items.map((s) => (
                <div key={s.id}>
                  <input type="radio" id={`source-${s.id}`} name="source" checked={draft.sourceId === s.id}
                    onChange={() => update({ sourceId: s.id, tables: [], name: draft.name || s.name })} />{" "}
                  <label htmlFor={`source-${s.id}`} style={{ display: "inline" }}>
                    {s.name} <span className="muted">({s.user}@{s.host}:{s.port}/{s.database})</span>
                  </label>
                </div>
              ))}
            </fieldset>
          </>
        )}
        {step === 1 && (
          <>
            <div>
              <input type="checkbox" id="all-tables" checked={draft.allTables} onChange={(e) => update({ allTables: e.target.checked })} />{" "}
              <label htmlFor="all-tables" style={{ display: "inline" }}>
                Every table of {source?.name}, also tables made later
              </label>
            </div>
            {!draft.allTables && (
              <>
                <label htmlFor="table-search">Search tables</label>
                <input id="table-search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
                <p>
                  <button type="button" onClick={selectShown} disabled={shown.length === 0}>
                    Select all {search ? "found" : ""} ({shown.length})
                  </button>{" "}
                  <span className="muted">{draft.tables.length} chosen</span>
                </p>
                {tablesError && <p className="alert critical" role="alert">{tablesError}</p>}
                {!tables && !tablesError && <p className="muted" aria-busy="true">Reading the source&apos;s tables…</p>}
                <ul className="table-list">
                  {shown.map((t) => (
                    <li key={qualified(t)} data-table={qualified(t)}>
                      <input type="checkbox" id={`t-${qualified(t)}`} checked={chosen.has(qualified(t))} onChange={() => toggle(qualified(t))} />{" "}
                      <label htmlFor={`t-${qualified(t)}`} style={{ display: "inline" }}>
                        {qualified(t)} <span className="muted">({formatCount(t.estimated_rows)} rows, {formatBytes(t.total_bytes)})</span>
                      </label>
                      {t.problem && <span className="muted"> — no key: updates and deletes cannot be replicated</span>}
                    </li>
                  ))}
                </ul>
              </>
            )}
            {problems.map((t) => (
              <div key={qualified(t)} className="alert warning" role="note">
                {t.problem} {t.fix && <Copy text={t.fix} label={`the fix for ${qualified(t)}`} />}
              </div>
            ))}
          </>
        )}
        {step === 2 && (
          <>
            <fieldset>
              <legend>Where the Iceberg tables go</legend>
              <div>
                <input type="radio" id="dest-embedded" name="dest" checked={draft.destination.kind === "embedded"} onChange={() => dest({ kind: "embedded" })} />{" "}
                <label htmlFor="dest-embedded" style={{ display: "inline" }}>The workers&apos; own catalog and warehouse (embedded SQL catalog)</label>
              </div>
              <div>
                <input type="radio" id="dest-rest" name="dest" checked={draft.destination.kind === "rest"} onChange={() => dest({ kind: "rest" })} />{" "}
                <label htmlFor="dest-rest" style={{ display: "inline" }}>A REST catalog (Lakekeeper) and S3</label>
              </div>
            </fieldset>
            <Field id="warehouse" label="Warehouse (optional)" value={draft.destination.warehouse} onChange={(v) => dest({ warehouse: v })}
              hint="file:///path or s3://bucket/path; empty: the workers' --warehouse" />
            {draft.destination.kind === "rest" && (
              <>
                <Field id="catalog-uri" label="Catalog URL" value={draft.destination.catalogUri} onChange={(v) => dest({ catalogUri: v })} hint="http(s)://…/catalog" />
                <Field id="catalog-warehouse" label="Catalog warehouse" value={draft.destination.catalogWarehouse} onChange={(v) => dest({ catalogWarehouse: v })} />
                <Field id="s3-endpoint" label="S3 endpoint" value={draft.destination.s3Endpoint} onChange={(v) => dest({ s3Endpoint: v })} />
                <Field id="s3-region" label="S3 region" value={draft.destination.s3Region} onChange={(v) => dest({ s3Region: v })} />
                <Field id="s3-key" label="S3 access key id" value={draft.destination.s3AccessKeyId} onChange={(v) => dest({ s3AccessKeyId: v })} />
                <Field id="s3-secret" label="S3 secret access key (stored encrypted)" type="password" value={draft.destination.s3SecretAccessKey}
                  onChange={(v) => dest({ s3SecretAccessKey: v })} />
                <div>
                  <input type="checkbox" id="s3-path" checked={draft.destination.s3PathStyle} onChange={(e) => dest({ s3PathStyle: e.target.checked })} />{" "}
                  <label htmlFor="s3-path" style={{ display: "inline" }}>Path-style S3 addresses (MinIO, SeaweedFS)</label>
                </div>
              </>
            )}
          </>
        )}
        {step === 3 && (
          <>
            <Field id="pipeline-name" label="Name" value={draft.name} onChange={(v) => update({ name: v })} hint="a-z, 0-9, - and _; the slot and publication are named after it" />
            <Field id="namespace" label="Iceberg namespace (optional)" value={draft.namespace} onChange={(v) => update({ namespace: v })} hint="empty: the source's schema" />
            <Field id="flush" label="Flush interval (optional)" value={draft.flushInterval} onChange={(v) => update({ flushInterval: v })}
              hint="500ms, 1s, 5m…; empty: the workers' default. Shorter: fresher tables, more small files." />
          </>
        )}
        {step === 4 && (
          <dl className="review">
            <dt>Source</dt>
            <dd>{source ? `${source.name} (${source.host}:${source.port}/${source.database})` : "—"}</dd>
            <dt>Tables</dt>
            <dd data-review="tables">{draft.allTables ? "every table, also later ones" : draft.tables.join(", ")}</dd>
            <dt>Destination</dt>
            <dd>{draft.destination.kind === "embedded" ? "the workers' embedded catalog" : `REST catalog ${draft.destination.catalogUri}`}{draft.destination.warehouse && `, warehouse ${draft.destination.warehouse}`}</dd>
            <dt>Name</dt>
            <dd>{draft.name}</dd>
            <dt>Flush interval</dt>
            <dd>{draft.flushInterval || "the workers' default"}</dd>
          </dl>
        )}
      </section>
      {stop && step < 4 && <p className="muted" role="status">{stop}</p>}
      {error && <p className="alert critical" role="alert">{error}</p>}
      <p className="actions">
        <button type="button" onClick={() => setStep((s) => s - 1)} disabled={step === 0}>Back</button>
        {step < 4 ? (
          <button type="button" className="primary" onClick={() => setStep((s) => s + 1)} disabled={stop !== null}>Next</button>
        ) : (
          <button type="button" className="primary" onClick={() => void create()} disabled={busy}>
            {busy ? "Creating…" : "Create and start"}
          </button>
        )}
      </p>
    </main>
  );
}
