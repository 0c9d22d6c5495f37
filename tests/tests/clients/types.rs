//! Every column type MariaDB 10.11 has, round-tripped through bound
//! parameters and read back with both protocols.

use mysql::prelude::Queryable;
use mysql::Value;
use torpor_tests::{backend, connect, Torpor};

use super::{binary, bytes, describe_difference, pattern, rows_of, text, utf8_text};

/// A value bound as a parameter, and what each protocol gives back.
struct Sample {
    bind: Value,
    text: Value,
    binary: Value,
}

impl Sample {
    /// A string-like value: the same bytes everywhere.
    fn same(data: impl Into<Vec<u8>>) -> Sample {
        let data = data.into();
        Sample {
            bind: Value::Bytes(data.clone()),
            text: Value::Bytes(data.clone()),
            binary: Value::Bytes(data),
        }
    }

    /// A typed value that the binary protocol returns as it was bound.
    fn echo(bind: Value, text: &str) -> Sample {
        Sample {
            binary: bind.clone(),
            bind,
            text: bytes(text),
        }
    }

    fn new(bind: Value, text: impl Into<Vec<u8>>, binary: Value) -> Sample {
        Sample {
            bind,
            text: Value::Bytes(text.into()),
            binary,
        }
    }
}

/// A column and two values for it.
struct TypeCase {
    column: &'static str,
    sql_type: &'static str,
    samples: [Sample; 2],
}

fn type_cases() -> Vec<TypeCase> {
    use Value::{Date, Double, Float, Int, Time, UInt};
    let case = |column, sql_type, a, b| TypeCase {
        column,
        sql_type,
        samples: [a, b],
    };
    let varbinary: Vec<u8> = (0..=255u8).collect();
    let mut binary_padded = vec![0u8, 1, 0xff];
    binary_padded.resize(8, 0);
    vec![
        case(
            "c_tinyint",
            "TINYINT",
            Sample::echo(Int(-128), "-128"),
            Sample::echo(Int(127), "127"),
        ),
        case(
            "c_tinyint_u",
            "TINYINT UNSIGNED",
            Sample::echo(Int(0), "0"),
            Sample::echo(Int(255), "255"),
        ),
        case(
            "c_smallint",
            "SMALLINT",
            Sample::echo(Int(-32768), "-32768"),
            Sample::echo(Int(32767), "32767"),
        ),
        case(
            "c_smallint_u",
            "SMALLINT UNSIGNED",
            Sample::echo(Int(0), "0"),
            Sample::echo(Int(65535), "65535"),
        ),
        case(
            "c_mediumint",
            "MEDIUMINT",
            Sample::echo(Int(-8388608), "-8388608"),
            Sample::echo(Int(8388607), "8388607"),
        ),
        case(
            "c_mediumint_u",
            "MEDIUMINT UNSIGNED",
            Sample::echo(Int(0), "0"),
            Sample::echo(Int(16777215), "16777215"),
        ),
        case(
            "c_int",
            "INT",
            Sample::echo(Int(i32::MIN.into()), "-2147483648"),
            Sample::echo(Int(i32::MAX.into()), "2147483647"),
        ),
        case(
            "c_int_u",
            "INT UNSIGNED",
            Sample::echo(Int(0), "0"),
            Sample::echo(Int(u32::MAX.into()), "4294967295"),
        ),
        case(
            "c_bigint",
            "BIGINT",
            Sample::echo(Int(i64::MIN), "-9223372036854775808"),
            Sample::echo(Int(i64::MAX), "9223372036854775807"),
        ),
        case(
            "c_bigint_u",
            "BIGINT UNSIGNED",
            Sample::echo(Int(0), "0"),
            Sample::echo(UInt(u64::MAX), "18446744073709551615"),
        ),
        case(
            "c_decimal",
            "DECIMAL(30,10)",
            Sample::same("-12345678901234567890.0123456789"),
            Sample::same("0.0000000001"),
        ),
        case(
            "c_float",
            "FLOAT",
            Sample::echo(Float(3.5), "3.5"),
            Sample::echo(Float(-65504.0), "-65504"),
        ),
        case(
            "c_double",
            "DOUBLE",
            Sample::echo(Double(-1.7976931348623157e308), "-1.7976931348623157e308"),
            Sample::echo(Double(0.1), "0.1"),
        ),
        case(
            "c_bit",
            "BIT(12)",
            Sample::new(
                Int(0xabc),
                &b"\x0a\xbc"[..],
                Value::Bytes(b"\x0a\xbc".to_vec()),
            ),
            Sample::new(Int(0), &b"\x00\x00"[..], Value::Bytes(b"\x00\x00".to_vec())),
        ),
        case(
            "c_date",
            "DATE",
            Sample::echo(Date(1000, 1, 1, 0, 0, 0, 0), "1000-01-01"),
            Sample::echo(Date(9999, 12, 31, 0, 0, 0, 0), "9999-12-31"),
        ),
        case(
            "c_time6",
            "TIME(6)",
            Sample::echo(Time(true, 0, 12, 34, 56, 789012), "-12:34:56.789012"),
            Sample::echo(Time(false, 34, 22, 59, 59, 999999), "838:59:59.999999"),
        ),
        case(
            "c_time",
            "TIME",
            Sample::echo(Time(true, 34, 22, 59, 59, 0), "-838:59:59"),
            Sample::echo(Time(false, 0, 0, 0, 0, 0), "00:00:00"),
        ),
        case(
            "c_datetime6",
            "DATETIME(6)",
            Sample::echo(Date(1000, 1, 1, 0, 0, 0, 0), "1000-01-01 00:00:00.000000"),
            Sample::echo(
                Date(9999, 12, 31, 23, 59, 59, 999999),
                "9999-12-31 23:59:59.999999",
            ),
        ),
        case(
            "c_timestamp6",
            "TIMESTAMP(6) NULL DEFAULT NULL",
            Sample::echo(
                Date(2001, 2, 3, 4, 5, 6, 70809),
                "2001-02-03 04:05:06.070809",
            ),
            Sample::echo(
                Date(2024, 2, 29, 12, 0, 0, 500000),
                "2024-02-29 12:00:00.500000",
            ),
        ),
        case(
            "c_year",
            "YEAR",
            Sample::echo(Int(1901), "1901"),
            Sample::echo(Int(2155), "2155"),
        ),
        case(
            "c_char",
            "CHAR(10)",
            Sample::same("héllo 😀"),
            Sample::same(""),
        ),
        case(
            "c_varchar",
            "VARCHAR(300)",
            Sample::same("a'b\"c\\d\0e\n\t%_"),
            Sample::same("é".repeat(300)),
        ),
        case(
            "c_binary",
            "BINARY(8)",
            Sample::new(
                Value::Bytes(vec![0, 1, 0xff]),
                binary_padded.clone(),
                Value::Bytes(binary_padded),
            ),
            Sample::same(vec![0xffu8; 8]),
        ),
        case(
            "c_varbinary",
            "VARBINARY(300)",
            Sample::same(varbinary),
            Sample::same(Vec::new()),
        ),
        case(
            "c_tinyblob",
            "TINYBLOB",
            Sample::same(pattern(255, 1)),
            Sample::same(Vec::new()),
        ),
        case(
            "c_blob",
            "BLOB",
            Sample::same(pattern(65535, 2)),
            Sample::same(vec![0u8]),
        ),
        // Over Torpor's 1 MiB whole-packet limit: the row is streamed.
        case(
            "c_mediumblob",
            "MEDIUMBLOB",
            Sample::same(pattern((1 << 20) + 17, 3)),
            Sample::same(Vec::new()),
        ),
        case(
            "c_longblob",
            "LONGBLOB",
            Sample::same(pattern(3 << 20, 4)),
            Sample::same(pattern(1, 5)),
        ),
        case(
            "c_tinytext",
            "TINYTEXT",
            Sample::same(utf8_text(255)),
            Sample::same(""),
        ),
        case(
            "c_text",
            "TEXT",
            Sample::same(utf8_text(65535)),
            Sample::same("t"),
        ),
        case(
            "c_mediumtext",
            "MEDIUMTEXT",
            Sample::same(utf8_text((1 << 20) + 3)),
            Sample::same(""),
        ),
        case(
            "c_longtext",
            "LONGTEXT",
            Sample::same(utf8_text(2 << 20)),
            Sample::same("😀"),
        ),
        case(
            "c_enum",
            "ENUM('a','b','c')",
            Sample::same("b"),
            Sample::same("c"),
        ),
        case(
            "c_set",
            "SET('x','y','z')",
            Sample::same("x,z"),
            Sample::same(""),
        ),
        case(
            "c_json",
            "JSON",
            Sample::same(r#"{"a": [1, 2.5, "x"], "b": null, "c": "é"}"#),
            Sample::same("[]"),
        ),
        case(
            "c_inet6",
            "INET6",
            Sample::same("2001:db8::1"),
            Sample::same("::ffff:192.0.2.1"),
        ),
        case(
            "c_uuid",
            "UUID",
            Sample::same("123e4567-e89b-12d3-a456-426614174000"),
            Sample::same("00000000-0000-0000-0000-000000000000"),
        ),
    ]
}

/// Which sample (if any) row `id` holds in column `index`: rows 1 and 2
/// hold the two samples, row 3 is all NULL, rows 4 and 5 alternate NULLs
/// so that every bit of the binary protocol's NULL bitmap is exercised
/// both ways.
fn sample_for(id: usize, index: usize) -> Option<usize> {
    match id {
        1 => Some(0),
        2 => Some(1),
        3 => None,
        4 => (index % 2 == 1).then_some(0),
        5 => (index % 2 == 0).then_some(1),
        _ => unreachable!(),
    }
}

#[test]
fn prepared_statements_round_trip_every_column_type() {
    let torpor = Torpor::start();
    let cases = type_cases();
    let table = "clients_types";
    let mut proxied = connect(torpor.addr());
    let columns: Vec<String> = cases
        .iter()
        .map(|c| format!("{} {}", c.column, c.sql_type))
        .collect();
    proxied
        .query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .unwrap();
    proxied
        .query_drop(format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, {}) DEFAULT CHARSET = utf8mb4",
            columns.join(", ")
        ))
        .unwrap();

    let names: Vec<&str> = cases.iter().map(|c| c.column).collect();
    let placeholders = vec!["?"; cases.len() + 1].join(", ");
    let insert = proxied
        .prep(format!(
            "INSERT INTO {table} (id, {}) VALUES ({placeholders})",
            names.join(", ")
        ))
        .unwrap();
    for id in 1..=5 {
        let mut params = vec![Value::Int(id as i64)];
        for (index, case) in cases.iter().enumerate() {
            params.push(match sample_for(id, index) {
                Some(s) => case.samples[s].bind.clone(),
                None => Value::NULL,
            });
        }
        proxied.exec_drop(&insert, params).unwrap();
        assert_eq!(proxied.affected_rows(), 1);
    }

    let select_text = format!("SELECT id, {} FROM {table} ORDER BY id", names.join(", "));
    let select_binary = format!(
        "SELECT id, {} FROM {table} WHERE id >= ? ORDER BY id",
        names.join(", ")
    );
    let mut direct = connect(backend().addr());
    let proxied_text = text(&mut proxied, &select_text);
    let proxied_binary = binary(&mut proxied, &select_binary, vec![Value::Int(0)]);

    for (protocol, replies) in [("text", &proxied_text), ("binary", &proxied_binary)] {
        let rows = rows_of(replies);
        assert_eq!(rows.len(), 5, "{protocol}: rows");
        for (r, row) in rows.iter().enumerate() {
            let id = r + 1;
            for (index, case) in cases.iter().enumerate() {
                let want = match sample_for(id, index) {
                    Some(s) if protocol == "text" => &case.samples[s].text,
                    Some(s) => &case.samples[s].binary,
                    None => &Value::NULL,
                };
                let got = &row[index + 1];
                assert!(
                    got == want,
                    "{protocol} protocol, row {id}, {} {}: got {got:?}, want {want:?}{}",
                    case.column,
                    case.sql_type,
                    describe_difference(got, want),
                );
            }
        }
    }
    // The same reads straight from MariaDB give the same columns and rows:
    // what went in through Torpor is what is stored, and metadata passes
    // through untouched.
    assert!(
        text(&mut direct, &select_text) == proxied_text,
        "text protocol differs from direct"
    );
    assert!(
        binary(&mut direct, &select_binary, vec![Value::Int(0)]) == proxied_binary,
        "binary protocol differs from direct"
    );
}
