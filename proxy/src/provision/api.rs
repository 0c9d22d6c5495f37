//! The admin API's routes for created services:
//!
//! - `POST /services` with a JSON body ([`super::spec::ServiceSpec`]):
//!   201 with the service as `GET /services/{name}` shows it; 400 for a
//!   body that does not read or validate, 409 for a name, account or
//!   host already taken.
//! - `DELETE /services/{name}?data=keep|drop`: 200 once its backend has
//!   stopped and its data is kept or dropped; the parameter is required
//!   (a delete never guesses what to do with data). 404 unknown, 409 for
//!   a config file's service or one with clients connected.
//!
//! Errors have the shape of the API's others: `{"error": "…"}`.

use std::io::Read;

use serde_json::{json, Value};
use tiny_http::Method;

use super::spec::ServiceSpec;
use super::{Data, ProvisionError};
use crate::context::Shared;

/// The largest body read (a service with many accounts fits easily).
const MAX_BODY: u64 = 256 * 1024;

/// Answers `request` when it is one of these routes; `None` otherwise
/// (the API's other routes).
pub fn route(shared: &Shared, request: &mut tiny_http::Request) -> Option<(u16, Value)> {
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let answer = match (request.method(), parts.as_slice()) {
        (Method::Post, ["services"]) => post(shared, request),
        (Method::Delete, ["services", name]) => data_param(&url)
            .and_then(|data| super::delete(shared, name, data).map(|()| data))
            .map(|data| {
                json!({
                    "deleted": name,
                    "data": match data { Data::Keep => "kept", Data::Drop => "dropped" },
                })
            }),
        _ => return None,
    };
    Some(match answer {
        Ok(body) if request.method() == &Method::Post => (201, body),
        Ok(body) => (200, body),
        Err(e) => (e.status(), json!({ "error": e.to_string() })),
    })
}

fn post(shared: &Shared, request: &mut tiny_http::Request) -> Result<Value, ProvisionError> {
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| ProvisionError::Invalid(format!("reading the body: {e}")))?;
    if body.len() as u64 > MAX_BODY {
        return Err(ProvisionError::Invalid(format!(
            "the body is larger than {MAX_BODY} bytes"
        )));
    }
    let spec = ServiceSpec::parse(&body).map_err(ProvisionError::Invalid)?;
    let service = super::create(shared, spec)?;
    Ok(crate::admin::describe(shared, &service))
}

/// `data=keep` or `data=drop`, required.
fn data_param(url: &str) -> Result<Data, ProvisionError> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let mut data = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("data", "keep") => data = Some(Data::Keep),
            ("data", "drop") => data = Some(Data::Drop),
            (key, value) => {
                return Err(ProvisionError::Invalid(format!(
                    "{key}={value:?}: the only parameter is data=keep or data=drop"
                )))
            }
        }
    }
    data.ok_or_else(|| {
        ProvisionError::Invalid(
            "say what happens to the service's data: ?data=keep (its datadir stays) or ?data=drop (it is removed)".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_parameter_is_required_and_checked() {
        assert_eq!(data_param("/services/a?data=keep").unwrap(), Data::Keep);
        assert_eq!(data_param("/services/a?data=drop").unwrap(), Data::Drop);
        for bad in [
            "/services/a",
            "/services/a?data=",
            "/services/a?data=maybe",
            "/services/a?force=1",
        ] {
            assert_eq!(data_param(bad).unwrap_err().status(), 400, "{bad}");
        }
    }
}
