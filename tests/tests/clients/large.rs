//! Big data: rows and commands over 16 MiB in both directions, and LOAD
//! DATA LOCAL INFILE.

use std::io::Write;
use std::sync::{Arc, Mutex};

use mysql::prelude::Queryable;
use mysql::{LocalInfileHandler, Value};
use torpor_tests::{connect, Torpor};

use super::{bytes, describe_difference, hex, pattern, rows_of, sha1_hex, text, Reply};

const MAX_PAYLOAD: usize = 0xff_ffff;

#[test]
fn rows_over_16_mib_in_both_directions() {
    let torpor = Torpor::start();
    let table = "clients_big";
    let mut proxied = connect(torpor.addr());
    proxied
        .query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .unwrap();
    proxied
        .query_drop(format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, b LONGBLOB NOT NULL)"
        ))
        .unwrap();
    let sizes = [
        MAX_PAYLOAD,
        2 * MAX_PAYLOAD,
        (17 << 20) + 5,
        // `SELECT b` text row: 0xfd + 3 length bytes + the blob = exactly
        // one full packet, followed by an empty one.
        MAX_PAYLOAD - 4,
        // Binary row: 0x00 header + 1-byte NULL bitmap + 4 length bytes.
        MAX_PAYLOAD - 6,
    ];
    let insert = proxied
        .prep(format!("INSERT INTO {table} (id, b) VALUES (?, ?)"))
        .unwrap();
    let select = proxied
        .prep(format!("SELECT b FROM {table} WHERE id = ?"))
        .unwrap();
    let mut id = 0;
    for (n, &size) in sizes.iter().enumerate() {
        let data = pattern(size, n as u64);
        let digest = sha1_hex(&data);
        // In through the text protocol (a COM_QUERY of twice the size, in
        // hex) and through the binary one (the crate sends a parameter
        // this large as COM_STMT_SEND_LONG_DATA of 16 MiB packets).
        id += 1;
        let text_id = id;
        proxied
            .query_drop(format!(
                "INSERT INTO {table} (id, b) VALUES ({text_id}, x'{}')",
                hex(&data)
            ))
            .unwrap();
        id += 1;
        let binary_id = id;
        proxied.exec_drop(&insert, (binary_id, &data)).unwrap();
        for row_id in [text_id, binary_id] {
            let stored: (u64, String) = proxied
                .query_first(format!(
                    "SELECT LENGTH(b), SHA1(b) FROM {table} WHERE id = {row_id}"
                ))
                .unwrap()
                .unwrap();
            assert_eq!(
                stored,
                (size as u64, digest.clone()),
                "stored row {row_id} of {size} bytes"
            );
            // Out through both protocols.
            let via_text: Vec<u8> = proxied
                .query_first(format!("SELECT b FROM {table} WHERE id = {row_id}"))
                .unwrap()
                .unwrap();
            assert!(
                via_text == data,
                "text read of {size} bytes: {}",
                describe_difference(&Value::Bytes(via_text), &Value::Bytes(data.clone()))
            );
            let via_binary: Vec<u8> = proxied.exec_first(&select, (row_id,)).unwrap().unwrap();
            assert!(
                via_binary == data,
                "binary read of {size} bytes: {}",
                describe_difference(&Value::Bytes(via_binary), &Value::Bytes(data.clone()))
            );
        }
    }

    // COM_QUERY payloads of exactly 16 MiB - 1 and twice that: the client
    // ends each with an empty packet, which must go through too.
    for (n, payload) in [MAX_PAYLOAD, 2 * MAX_PAYLOAD].into_iter().enumerate() {
        id += 1;
        let head = format!("INSERT INTO {table} (id, b) VALUES ({id}, x'");
        let tail = "')";
        // 1 byte of command, then the SQL; pad with spaces to the size.
        let room = payload - 1 - head.len() - tail.len();
        let data = pattern(room / 2, 100 + n as u64);
        let padding = " ".repeat(room - 2 * data.len());
        let sql = format!("{head}{}{tail}{padding}", hex(&data));
        assert_eq!(sql.len() + 1, payload);
        proxied.query_drop(&sql).unwrap();
        let stored: (u64, String) = proxied
            .query_first(format!(
                "SELECT LENGTH(b), SHA1(b) FROM {table} WHERE id = {id}"
            ))
            .unwrap()
            .unwrap();
        assert_eq!(
            stored,
            (data.len() as u64, sha1_hex(&data)),
            "COM_QUERY of {payload} bytes"
        );
    }

    // And the session is in step afterwards.
    let count: Option<u64> = proxied
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .unwrap();
    assert_eq!(count, Some(id as u64));
    proxied.query_drop(format!("DROP TABLE {table}")).unwrap();
}

// ---------------------------------------------------------------------------
// LOAD DATA LOCAL INFILE

#[test]
fn load_data_local_infile() {
    let torpor = Torpor::start();
    let table = "clients_infile";
    let mut conn = connect(torpor.addr());
    conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(200) NOT NULL) DEFAULT CHARSET = utf8mb4"
    ))
    .unwrap();
    // Enough rows that the file goes in many packets (the crate sends it
    // in 4 KiB pieces, Torpor relays them until the empty one).
    let rows: Vec<(i64, String)> = (1..=20_000)
        .map(|i| (i, format!("name-{i}-{}", "é😀".repeat((i % 40) as usize))))
        .collect();
    let mut file = Vec::new();
    for (id, name) in &rows {
        writeln!(file, "{id}\t{name}").unwrap();
    }
    let file = Arc::new(file);
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let file = Arc::clone(&file);
        let asked = Arc::clone(&asked);
        conn.set_local_infile_handler(Some(LocalInfileHandler::new(move |name, out| {
            let name = String::from_utf8_lossy(name).into_owned();
            let empty = name.contains("empty");
            asked.lock().unwrap().push(name);
            if !empty {
                out.write_all(&file)?;
            }
            Ok(())
        })));
    }
    let load = |file: &str, table: &str| {
        format!("LOAD DATA LOCAL INFILE '{file}' INTO TABLE {table} CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' (id, name)")
    };
    conn.query_drop(load("clients-rows.tsv", table)).unwrap();
    assert_eq!(conn.affected_rows(), rows.len() as u64);
    assert_eq!(
        conn.info_str(),
        format!(
            "Records: {}  Deleted: 0  Skipped: 0  Warnings: 0",
            rows.len()
        )
    );
    let stored: Vec<(i64, String)> = conn
        .query(format!("SELECT id, name FROM {table} ORDER BY id"))
        .unwrap();
    assert!(
        stored == rows,
        "rows loaded differ from the file ({} rows read back)",
        stored.len()
    );

    // An empty file, and a load in the middle of a multi-statement.
    conn.query_drop(load("clients-empty.tsv", table)).unwrap();
    assert_eq!(conn.affected_rows(), 0);
    conn.query_drop(format!("TRUNCATE TABLE {table}")).unwrap();
    let multi = format!(
        "SELECT 'before' AS b; {}; SELECT COUNT(*) AS n FROM {table}",
        load("clients-again.tsv", table)
    );
    let got = text(&mut conn, &multi);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(rows_of(&got), &[vec![bytes("before")]]);
    assert!(
        matches!(&got[1], Reply::Set { affected_rows, .. } if *affected_rows == rows.len() as u64),
        "{got:?}"
    );
    assert_eq!(rows_of(&got[2..]), &[vec![bytes(&rows.len().to_string())]]);
    assert_eq!(
        *asked.lock().unwrap(),
        vec!["clients-rows.tsv", "clients-empty.tsv", "clients-again.tsv"],
        "the file names the server asked for"
    );
    let after: Vec<i64> = conn.query("SELECT 7").unwrap();
    assert_eq!(after, vec![7]);
}
