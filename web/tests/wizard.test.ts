import { describe, expect, it } from "vitest";
import type { SourceTable } from "../lib/api";
import { EMPTY_DESTINATION, blocker, createBody, searchTables, type Draft } from "../lib/wizard";

const table = (schema: string, name: string): SourceTable => ({
  schema, name, replica_identity: "default", has_primary_key: true, estimated_rows: 0, total_bytes: 0, partitioned: false,
});

const draft: Draft = {
  sourceId: 3, allTables: false, tables: ["public.orders"], destination: { ...EMPTY_DESTINATION },
  name: " shop ", namespace: "", flushInterval: "",
};

describe("the new-pipeline wizard", () => {
  it("searches tables by every word", () => {
    const all = [table("public", "orders"), table("public", "order_items"), table("billing", "orders")];
    expect(searchTables(all, "ORDER items").map((t) => t.name)).toEqual(["order_items"]);
    expect(searchTables(all, "billing").length).toBe(1);
    expect(searchTables(all, "  ").length).toBe(3);
  });
  it("sends what was chosen, and nothing left empty", () => {
    expect(createBody(draft)).toEqual({ name: "shop", source_id: 3, tables: ["public.orders"], destination: {} });
    const rest = createBody({
      ...draft, allTables: true, namespace: "raw", flushInterval: "5s",
      destination: { ...EMPTY_DESTINATION, kind: "rest", catalogUri: "http://lakekeeper:8181/catalog", catalogWarehouse: "lake",
        s3Endpoint: "http://seaweedfs:8333", s3AccessKeyId: "key", s3SecretAccessKey: "secret" },
    });
    expect(rest).toEqual({
      name: "shop", source_id: 3, namespace: "raw", flush_interval: "5s", tables: undefined,
      destination: { catalog_uri: "http://lakekeeper:8181/catalog", catalog_warehouse: "lake", s3_endpoint: "http://seaweedfs:8333",
        s3_access_key_id: "key", s3_secret_access_key: "secret", s3_path_style: true },
    });
  });
  it("says what is missing before going on", () => {
    expect(blocker({ ...draft, sourceId: null }, 0)).toBe("Choose a source.");
    expect(blocker({ ...draft, tables: [] }, 1)).toContain("at least one table");
    expect(blocker({ ...draft, tables: [], allTables: true }, 1)).toBeNull();
    expect(blocker({ ...draft, destination: { ...EMPTY_DESTINATION, kind: "rest" } }, 2)).toContain("REST catalog");
    expect(blocker({ ...draft, name: "Shop!" }, 3)).toContain("a-z");
    expect(blocker(draft, 3)).toBeNull();
  });
});
