//! The planner on real Iceberg table metadata, one schema change at a time.

use std::collections::HashMap;

use iceberg::spec::{FormatVersion, PartitionSpec, SortOrder, TableMetadataBuilder};

use super::*;
use crate::table::changelog_schema;

fn col(name: &str, ty: ColumnType, attnum: i16) -> ColumnDesc {
    ColumnDesc {
        name: name.into(),
        type_oid: 0,
        type_modifier: -1,
        is_key: attnum == 1,
        ty,
        attnum: Some(attnum),
        filled_on_add: false,
    }
}

/// Table metadata as `ChangelogTable::open` creates it for `columns`.
fn table(columns: &[ColumnDesc]) -> (TableMetadata, Attnums) {
    let md = TableMetadataBuilder::new(
        changelog_schema(columns).unwrap(),
        PartitionSpec::unpartition_spec(),
        SortOrder::unsorted_order(),
        "file:///tmp/t".into(),
        FormatVersion::V2,
        HashMap::new(),
    )
    .unwrap()
    .build()
    .unwrap()
    .metadata;
    let attnums = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (i as i32 + 1, c.attnum.unwrap()))
        .collect();
    (md, attnums)
}

/// Apply `plan`'s schema the way the table does.
fn evolve(md: TableMetadata, plan: &Plan) -> TableMetadata {
    md.into_builder(None)
        .add_current_schema(plan.schema.clone().unwrap())
        .unwrap()
        .build()
        .unwrap()
        .metadata
}

fn names(md: &TableMetadata) -> Vec<String> {
    md.current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| format!("{}:{}:{}", f.id, f.name, f.field_type))
        .collect()
}

const LSN: Lsn = Lsn(0x16B_3748);

#[test]
fn unchanged_columns_need_no_change() {
    let cols = [
        col("id", ColumnType::Int32, 1),
        col("v", ColumnType::Text, 2),
    ];
    let (md, known) = table(&cols);
    let p = plan(&md, &known, &cols, LSN).unwrap();
    assert!(p.schema.is_none() && p.notes.is_empty());
    assert_eq!(p.ids, vec![1, 2]);
}

#[test]
fn add_rename_widen_and_drop() {
    let cols = [
        col("id", ColumnType::Int32, 1),
        col("v", ColumnType::Text, 2),
        col("gone", ColumnType::Bool, 3),
    ];
    let (md, known) = table(&cols);
    let next = [
        col("id", ColumnType::Int64, 1),   // int -> bigint
        col("value", ColumnType::Text, 2), // renamed
        col(
            "extra",
            ColumnType::Decimal {
                precision: 10,
                scale: 2,
            },
            4,
        ),
    ];
    let p = plan(&md, &known, &next, LSN).unwrap();
    assert_eq!(p.ids[..2], [1, 2]);
    assert!(p.ids[2] > md.last_column_id());
    let md2 = evolve(md, &p);
    let n = names(&md2);
    assert_eq!(n[0], "1:id:long");
    assert_eq!(n[1], "2:value:string");
    // The dropped column stays; the new one comes before the `_cdc_*` columns.
    assert_eq!(n[2], "3:gone:boolean");
    assert!(n[3].ends_with(":extra:decimal(10, 2)"), "{n:?}");
    assert!(n[4].contains(":_cdc_op:"));
    // Replaying the old shape after a crash maps onto the same fields, with no change: the
    // source finds no attnum for names its catalog no longer has, and the schema history does.
    let mut old_cols = cols.clone();
    old_cols[1].attnum = None;
    old_cols[2].attnum = None;
    let old = plan(&md2, &p.attnums, &old_cols, LSN).unwrap();
    assert!(old.schema.is_none(), "{:?}", old.notes);
    assert_eq!(old.ids, vec![1, 2, 3]);
}

#[test]
fn a_type_iceberg_cannot_promote_gets_a_new_field() {
    let cols = [
        col("id", ColumnType::Int32, 1),
        col("n", ColumnType::Text, 2),
    ];
    let (md, known) = table(&cols);
    let next = [
        col("id", ColumnType::Int32, 1),
        col("n", ColumnType::Int32, 2),
    ];
    let p = plan(&md, &known, &next, LSN).unwrap();
    assert!(p.recopy, "the rows were converted without being sent");
    let md2 = evolve(md, &p);
    let n = names(&md2);
    assert_eq!(n[1], "2:n__before_0_16B3748:string");
    assert!(n[2].ends_with(":n:int"), "{n:?}");
    assert_ne!(p.ids[1], 2);
    // The same change seen again (a replay) changes nothing more.
    let again = plan(&md2, &p.attnums, &next, LSN).unwrap();
    assert!(again.schema.is_none(), "{:?}", again.notes);
    assert_eq!(again.ids, p.ids);
    // And the old shape still finds its history (PostgreSQL still numbers the column 2), without
    // taking the attnum back from the new field: the shape after it still binds as before.
    let old = plan(&md2, &p.attnums, &cols, LSN).unwrap();
    assert!(old.schema.is_none(), "{:?}", old.notes);
    assert_eq!(old.ids, vec![1, 2]);
    let after = plan(&md2, &old.attnums, &next, LSN).unwrap();
    assert!(after.schema.is_none(), "{:?}", after.notes);
    assert_eq!(after.ids, p.ids);
}

#[test]
fn dropping_and_re_adding_a_name_keeps_both_histories() {
    let cols = [
        col("id", ColumnType::Int32, 1),
        col("c", ColumnType::Text, 2),
    ];
    let (md, known) = table(&cols);
    // DROP COLUMN c; ADD COLUMN c text: a new attnum.
    let next = [
        col("id", ColumnType::Int32, 1),
        col("c", ColumnType::Text, 3),
    ];
    let p = plan(&md, &known, &next, LSN).unwrap();
    // Same name and type, but PostgreSQL says it is another column: no rows changed unseen.
    assert!(p.schema.is_some() && !p.recopy);
    let n = names(&evolve(md, &p));
    assert_eq!(n[1], "2:c__before_0_16B3748:string");
    assert!(n[2].ends_with(":c:string"), "{n:?}");
}

#[test]
fn a_column_added_with_a_default_needs_a_new_copy() {
    let cols = [col("id", ColumnType::Int32, 1)];
    let (md, known) = table(&cols);
    let plain = [
        col("id", ColumnType::Int32, 1),
        col("n", ColumnType::Text, 2),
    ];
    assert!(!plan(&md, &known, &plain, LSN).unwrap().recopy);
    let mut filled = plain.clone();
    filled[1].filled_on_add = true;
    let p = plan(&md, &known, &filled, LSN).unwrap();
    assert!(p.recopy && p.schema.is_some());
    // Once the field exists, the flag (which PostgreSQL keeps) asks for nothing more.
    let again = plan(&evolve(md, &p), &p.attnums, &filled, LSN).unwrap();
    assert!(!again.recopy && again.schema.is_none());
}

#[test]
fn narrower_source_types_fit_wider_fields() {
    assert_eq!(fit(&ColumnType::Int64, &ColumnType::Int32), Fit::Holds);
    assert_eq!(fit(&ColumnType::Float32, &ColumnType::Float64), Fit::Widen);
    let d = |p, s| ColumnType::Decimal {
        precision: p,
        scale: s,
    };
    assert_eq!(fit(&d(10, 2), &d(12, 2)), Fit::Widen);
    assert_eq!(fit(&d(12, 2), &d(10, 2)), Fit::Holds);
    assert_eq!(fit(&d(10, 2), &d(10, 3)), Fit::No);
    assert_eq!(fit(&ColumnType::Int32, &ColumnType::Text), Fit::No);
}

#[test]
fn attnums_round_trip_through_the_property() {
    let a: Attnums = [(1, 1), (7, 3)].into_iter().collect();
    assert_eq!(parse_attnums(Some(&format_attnums(&a))), a);
    assert!(parse_attnums(None).is_empty());
}
