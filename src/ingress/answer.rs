//! Every answer the gateway gives a sender, and the one place that maps outcomes to statuses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::json::JsonError;
use crate::route::{Examine, KeyError};
use crate::verify::VerifyError;

/// A response body: always complete before it is sent.
pub type Body = Full<Bytes>;

/// Why a request was not accepted. Every variant is the sender's doing except
/// [`Rejection::Unavailable`], which the sender should retry.
#[derive(Debug)]
pub enum Rejection {
    /// No route for the path.
    NotFound,
    /// A route exists, but only `POST` is accepted.
    MethodNotAllowed,
    /// The client address is not in the route's allow list.
    Forbidden,
    /// The listener wants a client certificate from `client_ca`, and this connection
    /// presented none (`missing`) or one that does not chain to it.
    ClientCertificate {
        /// No certificate was presented at all.
        missing: bool,
    },
    /// More header fields than `server.max_headers`.
    TooManyHeaders,
    /// A rate limit was hit; try again after `retry_after` seconds.
    Limited {
        /// `429` or `503`, as the route chooses.
        status: StatusCode,
        /// Seconds until a request would be allowed.
        retry_after: u64,
        /// Which limit: `client`, `route` or `global`.
        limiter: &'static str,
    },
    /// The body is larger than the route accepts.
    TooLarge {
        /// The route's cap in bytes.
        limit: u64,
    },
    /// The body was not received in time.
    Timeout,
    /// The body could not be read.
    BadBody,
    /// The route needs a JSON body and this is not one.
    NotJson,
    /// The route reads the JSON body, and an object in it names a key twice.
    RepeatedKey,
    /// The route keys on a header, and the request sends it twice or not as text.
    DedupHeader(KeyError),
    /// The body's `Content-Encoding` is not one the gateway inflates.
    UnsupportedEncoding,
    /// A `Transfer-Encoding` other than `chunked`.
    UnsupportedTransferCoding,
    /// A `Content-Type` that is not visible ASCII, or two different ones.
    BadContentType,
    /// More than one `Host` header: which one names the site is not for the gateway to guess.
    BadHost,
    /// Verification failed.
    Unauthorized(VerifyError),
    /// The gateway cannot store the event now; nothing was stored.
    Unavailable {
        /// Seconds after which a retry is sensible.
        retry_after: u64,
    },
}

impl From<JsonError> for Rejection {
    fn from(error: JsonError) -> Rejection {
        match error {
            JsonError::NotJson | JsonError::ReservedKey => Rejection::NotJson,
            JsonError::RepeatedKey => Rejection::RepeatedKey,
        }
    }
}

impl From<Examine> for Rejection {
    fn from(error: Examine) -> Rejection {
        match error {
            Examine::Json(e) => e.into(),
            Examine::Key(KeyError::NotJson) => Rejection::NotJson,
            Examine::Key(e) => Rejection::DedupHeader(e),
        }
    }
}

impl Rejection {
    /// The status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::Forbidden | Rejection::ClientCertificate { .. } => StatusCode::FORBIDDEN,
            Rejection::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Rejection::Limited { status, .. } => *status,
            Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Timeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::BadBody
            | Rejection::NotJson
            | Rejection::RepeatedKey
            | Rejection::DedupHeader(_)
            | Rejection::BadContentType
            | Rejection::BadHost => StatusCode::BAD_REQUEST,
            Rejection::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, low-cardinality code for the JSON body, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::Forbidden => "forbidden",
            Rejection::ClientCertificate { missing: true } => "client_certificate_missing",
            Rejection::ClientCertificate { missing: false } => "client_certificate_untrusted",
            Rejection::TooManyHeaders => "too_many_headers",
            Rejection::Limited { .. } => "rate_limited",
            Rejection::TooLarge { .. } => "body_too_large",
            Rejection::Timeout => "body_timeout",
            Rejection::BadBody => "bad_body",
            Rejection::NotJson => "not_json",
            Rejection::RepeatedKey => "repeated_json_key",
            Rejection::DedupHeader(_) => "bad_dedup_header",
            Rejection::UnsupportedEncoding => "unsupported_encoding",
            Rejection::UnsupportedTransferCoding => "unsupported_transfer_coding",
            Rejection::BadContentType => "bad_content_type",
            Rejection::BadHost => "bad_host",
            Rejection::Unauthorized(_) => "unauthorized",
            Rejection::Unavailable { .. } => "unavailable",
        }
    }

    /// A short explanation for a person; never holds a secret or an expected signature.
    pub fn message(&self) -> String {
        match self {
            Rejection::NotFound => "no route for this path".into(),
            Rejection::MethodNotAllowed => "only POST is accepted".into(),
            Rejection::Forbidden => "client address not allowed".into(),
            Rejection::ClientCertificate { missing: true } => {
                "this listener needs a client certificate".into()
            }
            Rejection::ClientCertificate { missing: false } => {
                "client certificate not trusted".into()
            }
            Rejection::TooManyHeaders => "too many header fields".into(),
            Rejection::Limited { .. } => "too many requests, retry later".into(),
            Rejection::TooLarge { limit } => format!("body larger than {limit} bytes"),
            Rejection::Timeout => "body not received in time".into(),
            Rejection::BadBody => "body could not be read".into(),
            Rejection::NotJson => "this route needs a JSON body".into(),
            Rejection::RepeatedKey => "an object in the JSON body names the same key twice".into(),
            Rejection::DedupHeader(e) => e.to_string(),
            Rejection::UnsupportedEncoding => {
                "content-encoding must be gzip, deflate or none".into()
            }
            Rejection::UnsupportedTransferCoding => {
                "transfer-encoding must be chunked or none".into()
            }
            Rejection::BadContentType => "content-type must be one value of visible ASCII".into(),
            Rejection::BadHost => "host sent more than once".into(),
            Rejection::Unauthorized(e) => e.to_string(),
            Rejection::Unavailable { .. } => "cannot store the event now, retry later".into(),
        }
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({ "error": self.code(), "message": self.message() });
        let mut response = json(self.status(), &body);
        let retry_after = match self {
            Rejection::Limited { retry_after, .. } | Rejection::Unavailable { retry_after } => {
                Some(retry_after)
            }
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if matches!(self, Rejection::MethodNotAllowed) {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

/// The answer to an accepted (`202`) or duplicate (`200`) event.
pub fn accepted(id: &str, duplicate: bool) -> Response<Body> {
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    json(
        status,
        &serde_json::json!({ "id": id, "duplicate": duplicate }),
    )
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
