//! Building admin responses.

use http::Response;

/// An admin answer.
pub type Reply = Response<Vec<u8>>;

/// A response with `status`, content type and body (and its length).
pub fn reply(status: u16, ctype: &str, body: Vec<u8>) -> Reply {
    let mut r = Response::new(body);
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

/// A JSON response.
pub fn json(status: u16, v: &serde_json::Value) -> Reply {
    reply(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// A JSON response of a serializable value.
pub fn json_of<T: serde::Serialize>(status: u16, v: &T) -> Reply {
    reply(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}
