// The new-pipeline wizard's rules, apart from its page: which tables a search shows, and the
// request the review step sends.

import type { SourceTable } from "./api";

export interface Destination {
  kind: "embedded" | "rest";
  warehouse: string;
  catalogUri: string;
  catalogWarehouse: string;
  s3Endpoint: string;
  s3Region: string;
  s3AccessKeyId: string;
  s3SecretAccessKey: string;
  s3PathStyle: boolean;
}

export interface Draft {
  sourceId: number | null;
  /** Every table of the source, also future ones (a FOR ALL TABLES publication). */
  allTables: boolean;
  tables: string[];
  destination: Destination;
  name: string;
  namespace: string;
  flushInterval: string;
}

export const EMPTY_DESTINATION: Destination = {
  kind: "embedded",
  warehouse: "",
  catalogUri: "",
  catalogWarehouse: "",
  s3Endpoint: "",
  s3Region: "",
  s3AccessKeyId: "",
  s3SecretAccessKey: "",
  s3PathStyle: true,
};

export function qualified(t: SourceTable): string {
  return `${t.schema}.${t.name}`;
}

/** The tables whose qualified name holds every word of the search, in the source's order. */
export function searchTables(tables: SourceTable[], query: string): SourceTable[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  return tables.filter((t) => words.every((w) => qualified(t).toLowerCase().includes(w)));
}

function opt(v: string): string | undefined {
  const t = v.trim();
  return t === "" ? undefined : t;
}

/** The body of `POST /api/v1/pipelines` for a finished draft (empty fields are left out). */
export function createBody(d: Draft): Record<string, unknown> {
  const dest = d.destination;
  const destination: Record<string, unknown> =
    dest.kind === "embedded"
      ? { warehouse: opt(dest.warehouse) }
      : {
          warehouse: opt(dest.warehouse),
          catalog_uri: opt(dest.catalogUri),
          catalog_warehouse: opt(dest.catalogWarehouse),
          s3_endpoint: opt(dest.s3Endpoint),
          s3_region: opt(dest.s3Region),
          s3_access_key_id: opt(dest.s3AccessKeyId),
          s3_secret_access_key: opt(dest.s3SecretAccessKey),
          s3_path_style: dest.s3PathStyle,
        };
  return {
    name: d.name.trim(),
    source_id: d.sourceId,
    tables: d.allTables ? undefined : d.tables,
    namespace: opt(d.namespace),
    flush_interval: opt(d.flushInterval),
    destination: Object.fromEntries(Object.entries(destination).filter(([, v]) => v !== undefined)),
  };
}

/** Why the draft cannot go on from `step` yet, or null. */
export function blocker(d: Draft, step: number): string | null {
  if (step === 0 && d.sourceId === null) return "Choose a source.";
  if (step === 1 && !d.allTables && d.tables.length === 0) return "Choose at least one table, or every table.";
  if (step === 2 && d.destination.kind === "rest" && !opt(d.destination.catalogUri)) return "Give the REST catalog's URL.";
  if (step === 3 && !/^[a-z0-9][a-z0-9_-]{0,62}$/.test(d.name.trim())) return "Name it with 1 to 63 of a-z, 0-9, - and _.";
  return null;
}
