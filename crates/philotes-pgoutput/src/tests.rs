use super::*;

fn msg(parts: &[&[u8]]) -> Bytes {
    Bytes::from(parts.concat())
}

fn tuple(cells: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = (cells.len() as u16).to_be_bytes().to_vec();
    for c in cells {
        match c {
            None => out.push(b'n'),
            Some(b"~toast~") => out.push(b'u'),
            Some(v) => {
                out.push(b't');
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
    out
}

fn text(v: &str) -> Cell {
    Cell::Text(Bytes::copy_from_slice(v.as_bytes()))
}

#[test]
fn begin_and_commit() {
    let b = msg(&[
        b"B",
        &0x0000_0001_0000_0010u64.to_be_bytes(),
        &42i64.to_be_bytes(),
        &7u32.to_be_bytes(),
    ]);
    assert_eq!(
        decode(&b).ok(),
        Some(Message::Begin {
            final_lsn: Lsn(0x1_0000_0010),
            timestamp: 42,
            xid: 7
        })
    );
    let c = msg(&[
        b"C",
        &[0],
        &5u64.to_be_bytes(),
        &9u64.to_be_bytes(),
        &1i64.to_be_bytes(),
    ]);
    assert_eq!(
        decode(&c).ok(),
        Some(Message::Commit {
            flags: 0,
            commit_lsn: Lsn(5),
            end_lsn: Lsn(9),
            timestamp: 1
        })
    );
}

#[test]
fn relation_with_key_column() {
    let m = msg(&[
        b"R",
        &16384u32.to_be_bytes(),
        b"public\0",
        b"orders\0",
        b"d",
        &2u16.to_be_bytes(),
        &[1],
        b"id\0",
        &23u32.to_be_bytes(),
        &(-1i32).to_be_bytes(),
        &[0],
        b"note\0",
        &25u32.to_be_bytes(),
        &(-1i32).to_be_bytes(),
    ]);
    let Ok(Message::Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    }) = decode(&m)
    else {
        panic!("not a relation");
    };
    assert_eq!(
        (oid, namespace.as_str(), name.as_str()),
        (16384, "public", "orders")
    );
    assert_eq!(replica_identity, b'd');
    assert_eq!(columns.len(), 2);
    assert_eq!(columns[0].flags, 1);
    assert_eq!(columns[1].name, "note");
}

#[test]
fn insert_keeps_null_unchanged_and_text_apart() {
    let m = msg(&[
        b"I",
        &1u32.to_be_bytes(),
        b"N",
        &tuple(&[Some(b"1"), None, Some(b"~toast~"), Some(b"")]),
    ]);
    assert_eq!(
        decode(&m).ok(),
        Some(Message::Insert {
            oid: 1,
            new: vec![text("1"), Cell::Null, Cell::Unchanged, text("")]
        })
    );
}

#[test]
fn update_with_and_without_old_tuple() {
    let plain = msg(&[b"U", &1u32.to_be_bytes(), b"N", &tuple(&[Some(b"2")])]);
    assert_eq!(
        decode(&plain).ok(),
        Some(Message::Update {
            oid: 1,
            old: None,
            new: vec![text("2")]
        })
    );
    let keyed = msg(&[
        b"U",
        &1u32.to_be_bytes(),
        b"K",
        &tuple(&[Some(b"1")]),
        b"N",
        &tuple(&[Some(b"2")]),
    ]);
    assert_eq!(
        decode(&keyed).ok(),
        Some(Message::Update {
            oid: 1,
            old: Some((b'K', vec![text("1")])),
            new: vec![text("2")]
        })
    );
}

#[test]
fn delete_and_truncate() {
    let d = msg(&[b"D", &1u32.to_be_bytes(), b"O", &tuple(&[Some(b"1"), None])]);
    assert_eq!(
        decode(&d).ok(),
        Some(Message::Delete {
            oid: 1,
            kind: b'O',
            old: vec![text("1"), Cell::Null]
        })
    );
    let t = msg(&[
        b"T",
        &2u32.to_be_bytes(),
        &[1],
        &10u32.to_be_bytes(),
        &11u32.to_be_bytes(),
    ]);
    assert_eq!(
        decode(&t).ok(),
        Some(Message::Truncate {
            options: 1,
            oids: vec![10, 11]
        })
    );
}

#[test]
fn logical_message() {
    let m = msg(&[
        b"M",
        &[1],
        &77u64.to_be_bytes(),
        b"philotes\0",
        &3i32.to_be_bytes(),
        b"abc",
    ]);
    assert_eq!(
        decode(&m).ok(),
        Some(Message::Message {
            transactional: true,
            lsn: Lsn(77),
            prefix: "philotes".into(),
            content: Bytes::from_static(b"abc")
        })
    );
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let cases: Vec<Bytes> = vec![
        Bytes::new(),
        msg(&[b"B", &[0, 0]]),
        msg(&[b"I", &1u32.to_be_bytes(), b"X"]),
        msg(&[
            b"I",
            &1u32.to_be_bytes(),
            b"N",
            &1u16.to_be_bytes(),
            b"t",
            &(-5i32).to_be_bytes(),
        ]),
        msg(&[
            b"I",
            &1u32.to_be_bytes(),
            b"N",
            &1u16.to_be_bytes(),
            b"t",
            &(1000i32).to_be_bytes(),
            b"ab",
        ]),
        msg(&[b"R", &1u32.to_be_bytes(), b"no-terminator"]),
        msg(&[b"T", &u32::MAX.to_be_bytes(), &[0]]),
        msg(&[b"Z"]),
        msg(&[b"B", &[0; 20], b"extra"]),
    ];
    for c in cases {
        let err = decode(&c).err();
        assert!(err.is_some(), "accepted malformed {c:?}");
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::Protocol));
    }
}

#[test]
fn every_truncation_of_a_valid_message_is_an_error() {
    let m = msg(&[
        b"U",
        &1u32.to_be_bytes(),
        b"O",
        &tuple(&[Some(b"1"), None, Some(b"~toast~")]),
        b"N",
        &tuple(&[Some(b"hello"), None, Some(b"~toast~")]),
    ]);
    assert!(decode(&m).is_ok());
    for cut in 0..m.len() {
        assert!(decode(&m.slice(..cut)).is_err(), "cut at {cut} accepted");
    }
}

#[test]
fn stream_control_messages() {
    let start = msg(&[b"S", &700u32.to_be_bytes(), &[1]]);
    assert_eq!(
        decode(&start).ok(),
        Some(Message::StreamStart {
            xid: 700,
            first_segment: true
        })
    );
    assert_eq!(decode(&msg(&[b"E"])).ok(), Some(Message::StreamStop));
    let commit = msg(&[
        b"c",
        &700u32.to_be_bytes(),
        &[0],
        &5u64.to_be_bytes(),
        &9u64.to_be_bytes(),
        &3i64.to_be_bytes(),
    ]);
    assert_eq!(
        decode(&commit).ok(),
        Some(Message::StreamCommit {
            xid: 700,
            flags: 0,
            commit_lsn: Lsn(5),
            end_lsn: Lsn(9),
            timestamp: 3
        })
    );
    let abort = msg(&[b"A", &700u32.to_be_bytes(), &701u32.to_be_bytes()]);
    assert_eq!(
        decode(&abort).ok(),
        Some(Message::StreamAbort {
            xid: 700,
            subxid: 701
        })
    );
    // A stream abort cut short is an error, not a guess.
    assert!(decode(&msg(&[b"A", &700u32.to_be_bytes()])).is_err());
}

#[test]
fn changes_inside_a_stream_carry_their_xid() {
    let insert = msg(&[
        b"I",
        &701u32.to_be_bytes(),
        &16384u32.to_be_bytes(),
        b"N",
        &tuple(&[Some(b"1"), None]),
    ]);
    assert!(is_streamed_change(&insert));
    assert_eq!(streamed_xid(&insert).ok(), Some(701));
    assert_eq!(
        decode_streamed(&insert).ok(),
        Some((
            701,
            Message::Insert {
                oid: 16384,
                new: vec![text("1"), Cell::Null]
            }
        ))
    );
    // Read as a protocol-1 message, the xid would be taken for the relation oid: the
    // leftover bytes make that an error instead.
    assert!(decode(&insert).is_err());
    let relation = msg(&[
        b"R",
        &701u32.to_be_bytes(),
        &16384u32.to_be_bytes(),
        b"public\0",
        b"t\0",
        b"d",
        &1u16.to_be_bytes(),
        &[1],
        b"id\0",
        &23u32.to_be_bytes(),
        &(-1i32).to_be_bytes(),
    ]);
    let (xid, rel) = decode_streamed(&relation).unwrap_or((0, Message::StreamStop));
    assert_eq!(xid, 701);
    assert!(matches!(rel, Message::Relation { oid: 16384, .. }));
    // Stream control messages and origins carry no xid prefix.
    let stop = msg(&[b"E"]);
    assert!(!is_streamed_change(&stop));
    assert!(decode_streamed(&stop).is_err());
    assert!(streamed_xid(&msg(&[b"I", &[0, 0]])).is_err());
}
