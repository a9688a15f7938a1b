"use client";
// A pipeline's dead letters: the change that could not be written, with its row and the error;
// retry (after fixing the source or the mapping) or skip (the change is left out of the lake,
// recorded as skipped). Both say what they do before they do it.

import Link from "next/link";
import { useParams } from "next/navigation";
import { useCallback, useState } from "react";
import Confirm from "@/components/Confirm";
import { useMe } from "@/components/Shell";
import { api, idPath, type DeadLetter, type Page } from "@/lib/api";
import { formatTime } from "@/lib/format";
import { usePoll } from "@/lib/poll";

export default function DeadLetters() {
  const params = useParams<{ id: string }>();
  const id = idPath(params.id);
  const me = useMe();
  const canOperate = me?.scope === "operate" || me?.scope === "admin";
  const { data, error, loading, reload } = usePoll(
    useCallback(() => api.get<Page<DeadLetter>>(`/api/v1/pipelines/${id}/dead-letters`), [id]),
    5000,
  );
  const [actionError, setActionError] = useState<string>();
  const [notes, setNotes] = useState<Record<number, string>>({});

  const decide = async (letter: DeadLetter, how: "skip" | "retry") => {
    setActionError(undefined);
    const note = notes[letter.id]?.trim();
    try {
      await api.post(`/api/v1/pipelines/${id}/dead-letters/${letter.id}/${how}`, note ? { note } : {});
      reload();
    } catch (e) {
      setActionError(`${how === "skip" ? "Skip" : "Retry"} #${letter.id}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  const items = data?.items ?? [];
  return (
    <main>
      <p>
        <Link href="/">Pipelines</Link> / <Link href={`/pipelines/${id}`}>pipeline</Link> / dead letters
      </p>
      <h1>Dead letters</h1>
      {error && <p className="alert critical" role="alert">{error.message}</p>}
      {actionError && <p className="alert critical" role="alert">{actionError}</p>}
      {loading && !data && <p className="muted" aria-busy="true">Loading…</p>}
      {data && items.length === 0 && <p className="muted">No dead letters: every change was written.</p>}
      {items.map((l) => (
        <section key={l.id} className="card" aria-labelledby={`letter-${l.id}`} data-letter={l.id} style={{ marginBottom: "0.8rem" }}>
          <h2 id={`letter-${l.id}`}>
            #{l.id} {l.table} <span className="muted">({l.state})</span>
          </h2>
          <p>
            {l.op} at LSN {l.lsn}
            {l.column && <> in column <code>{l.column}</code></>}, {formatTime(l.time)}
          </p>
          <p className="alert critical">{l.error}</p>
          <pre className="row" aria-label={`The row of dead letter ${l.id}`}>{JSON.stringify(l.row, null, 2)}</pre>
          {l.note && <p className="muted">Note: {l.note}</p>}
          {l.state === "open" && canOperate && (
            <>
              <label htmlFor={`note-${l.id}`}>Note (why you decide so; kept in the audit log)</label>
              <input id={`note-${l.id}`} value={notes[l.id] ?? ""} maxLength={1000}
                onChange={(e) => setNotes((n) => ({ ...n, [l.id]: e.target.value }))} />
              <p className="actions">
                <Confirm label={`Retry #${l.id}`} title={`Retry dead letter #${l.id}?`} confirm="Retry"
                  onConfirm={() => decide(l, "retry")}>
                  <p>
                    The table writes this change again and goes on if it converts now — after a fix of the mapping or
                    the lake&apos;s column. A value that is wrong on the source comes back the same: fix it there and
                    resync the table instead.
                  </p>
                </Confirm>
                <Confirm label={`Skip #${l.id}`} title={`Skip dead letter #${l.id}?`} confirm="Skip this change" danger
                  onConfirm={() => decide(l, "skip")}>
                  <p>This change is left out of the lake for good and recorded as skipped; the table goes on after it. The lake will differ from the source for this row until it changes again or the table is resynced.</p>
                </Confirm>
              </p>
            </>
          )}
        </section>
      ))}
    </main>
  );
}
