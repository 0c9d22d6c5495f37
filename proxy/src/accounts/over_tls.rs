//! Reads a backend's accounts through Torpor's own backend connection,
//! for a backend leg that uses TLS: the same rustls settings as the
//! sessions' (`tls_ca` or `tls_fingerprint`, `preferred` or
//! `required`), which the `mysql` crate Torpor otherwise reads with
//! (built without TLS) cannot follow. One short-lived monoio runtime on
//! the accounts thread per read.

use std::time::Duration;

use torpor_protocol::auth::ProvenPassword;
use torpor_protocol::Capabilities;

use super::keeper::AdminLogin;
use crate::backend::{self, Login, QueryResult};
use crate::tls::backend::BackendTls;

/// A result set's rows, text protocol (`None` for NULL).
pub type Rows = Vec<Vec<Option<Vec<u8>>>>;

/// How long connecting, logging in and each read may take.
const LIMIT: Duration = Duration::from_secs(10);

/// Runs `queries` as the admin account of `access`, over TLS as `tls`
/// says; returns the rows of each (text protocol, `None` for NULL). A
/// query the server refuses is an error naming it.
pub fn query(access: &AdminLogin, tls: &BackendTls, queries: &[&str]) -> Result<Vec<Rows>, String> {
    let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .map_err(|e| format!("cannot make a runtime to read accounts: {e}"))?;
    runtime.block_on(async {
        let password = ProvenPassword::from_plaintext(&access.password);
        let no_attributes = torpor_protocol::handshake::PackedAttributes::default();
        let login = Login {
            user: access.user.as_bytes(),
            password: &password,
            capabilities: Capabilities::CLIENT_PROTOCOL_41
                | Capabilities::CLIENT_LONG_FLAG
                | Capabilities::CLIENT_TRANSACTIONS
                | Capabilities::CLIENT_MULTI_RESULTS,
            // utf8mb4_general_ci: account names in any script.
            collation: 45,
            database: None,
            attributes: &no_attributes,
            max_packet_size: 16 * 1024 * 1024,
        };
        let connect = backend::connect(&access.endpoint, &login, LIMIT, Some(tls));
        let (mut conn, _ok) = crate::timer::timeout(LIMIT, connect)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let replies = crate::timer::timeout(LIMIT, backend::run_queries(&mut conn, queries))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string());
        conn.conn.close().await;
        replies?
            .into_iter()
            .zip(queries)
            .map(|(reply, sql)| match reply {
                QueryResult::Rows(rows) => Ok(rows),
                QueryResult::Ok(_) => Ok(Vec::new()),
                QueryResult::Error(payload) => Err(format!(
                    "{sql}: {}",
                    String::from_utf8_lossy(payload.get(9..).unwrap_or_default())
                )),
            })
            .collect()
    })
}

/// A text-protocol cell as a string (NULL: empty).
pub fn text(cell: Option<&Option<Vec<u8>>>) -> String {
    cell.and_then(|c| c.as_deref())
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default()
}
