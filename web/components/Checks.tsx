// A source test's findings: each check, passed or failed, with the problem in the API's words
// and the statement that fixes it, ready to copy.

import Copy from "@/components/Copy";
import type { SourceTest } from "@/lib/api";

const NAMES: Record<string, string> = {
  connect: "Connection",
  version: "PostgreSQL version",
  wal_level: "wal_level",
  replication_privilege: "Replication privilege",
  replication_slots: "Free replication slots",
  wal_senders: "Free WAL senders",
  preflight: "Checks",
};

export default function Checks({ test }: { test: SourceTest }) {
  return (
    <section aria-labelledby="checks-title" data-test-ok={test.ok}>
      <h2 id="checks-title">{test.ok ? "Every check passed: a pipeline can start on this source" : "The source needs a fix"}</h2>
      <ul className="checks">
        {test.checks.map((c) => (
          <li key={c.name} data-check={c.name} data-ok={c.ok} className={c.ok ? "" : "alert critical"}>
            <strong>{c.ok ? "✓" : "✗"} {NAMES[c.name] ?? c.name}</strong>
            {c.message && <div>{c.message}</div>}
            {c.fix && (
              <div>
                Fix, as a superuser on the source: <Copy text={c.fix} label={`the fix for ${NAMES[c.name] ?? c.name}`} />
              </div>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}
