"use client";
// One source: test it again, and its tables with what replication needs to know — replica
// identity, size, rows, and the fix for a table whose updates and deletes cannot be replicated.

import ScrollTable from "@/components/ScrollTable";
import Link from "next/link";
import { useParams } from "next/navigation";
import { useCallback, useState } from "react";
import Checks from "@/components/Checks";
import Copy from "@/components/Copy";
import { useMe } from "@/components/Shell";
import { api, idPath, type Source, type SourceTable, type SourceTest } from "@/lib/api";
import { formatBytes, formatCount } from "@/lib/format";
import { usePoll } from "@/lib/poll";

export default function SourceDetail() {
  const params = useParams<{ id: string }>();
  const id = idPath(params.id);
  const me = useMe();
  const source = usePoll(useCallback(() => api.get<Source>(`/api/v1/sources/${id}`), [id]), 30_000);
  const tables = usePoll(useCallback(() => api.get<SourceTable[]>(`/api/v1/sources/${id}/tables`), [id]), 30_000);
  const [test, setTest] = useState<SourceTest>();
  const [testError, setTestError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const runTest = async () => {
    setBusy(true);
    setTestError(undefined);
    try {
      setTest(await api.post<SourceTest>(`/api/v1/sources/${id}/test`));
    } catch (e) {
      setTestError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  const s = source.data;
  return (
    <main>
      <p>
        <Link href="/sources">Sources</Link> / {s?.name ?? id}
      </p>
      <h1>{s ? s.name : "Source"}</h1>
      {source.error && <p className="alert critical" role="alert">{source.error.message}</p>}
      {s && (
        <p>
          {s.user}@{s.host}:{s.port}/{s.database}, TLS {s.sslmode}
          {s.has_password ? ", password stored (encrypted)" : ", no password"}
        </p>
      )}
      {me?.scope !== "read" && (
        <p>
          <button type="button" onClick={() => void runTest()} disabled={busy}>
            {busy ? "Testing…" : "Test the connection"}
          </button>
        </p>
      )}
      {testError && <p className="alert critical" role="alert">{testError}</p>}
      {test && <Checks test={test} />}
      <h2>Tables</h2>
      {tables.error && <p className="alert warning" role="alert">{tables.error.message}</p>}
      {tables.loading && !tables.data && <p className="muted" aria-busy="true">Reading the source&apos;s tables…</p>}
      {tables.data && tables.data.length === 0 && <p className="muted">The source has no tables of its users.</p>}
      {tables.data && tables.data.length > 0 && (
        <ScrollTable label="Source tables" columns={["Table", "Replica identity", "#Rows (estimate)", "#Size", "Replication"]}>
          {tables.data.map((t) => (
            <tr key={`${t.schema}.${t.name}`} data-table={`${t.schema}.${t.name}`}>
              <th scope="row">{t.schema}.{t.name}{t.partitioned && <span className="muted"> (partitioned)</span>}</th>
              <td>{t.replica_identity}{t.has_primary_key ? " (primary key)" : ""}</td>
              <td className="num">{formatCount(t.estimated_rows)}</td>
              <td className="num">{formatBytes(t.total_bytes)}</td>
              <td className="wrap">
                {t.problem ? (
                  <>
                    <span className="alert warning" style={{ display: "block" }}>{t.problem}</span>
                    {t.fix && <Copy text={t.fix} label={`the fix for ${t.schema}.${t.name}`} />}
                  </>
                ) : (
                  "ready"
                )}
              </td>
            </tr>
          ))}
        </ScrollTable>
      )}
    </main>
  );
}
