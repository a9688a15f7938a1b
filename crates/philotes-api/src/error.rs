//! Every error the API answers, as RFC 9457 problem details (`application/problem+json`).
//!
//! A 4xx says what was wrong and, for a body, which field; nothing was changed. A 5xx says
//! only that something failed and an error id: the log line with that id holds the detail, so
//! no internals (SQL, hosts, stack) reach a caller.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use philotes_core::{Error, ErrorKind};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (stable; documented in docs/api.md).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time and what to do about it.
    pub detail: String,
    /// Field-level problems of a request body or query.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For a server error: the id of the log line holding its detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

/// One field of a request that is not acceptable.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's path in the body (`port`, `tables[2]`), or the query parameter.
    pub field: String,
    pub message: String,
}

/// An error the API answers with.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    error_id: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            slug,
            detail: detail.into(),
            errors: Vec::new(),
            error_id: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// A body or query that parsed but is not acceptable, field by field.
    pub fn invalid(errors: Vec<FieldError>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "the request is not valid; see `errors` for each field",
        );
        e.errors = errors;
        e
    }

    pub fn unauthenticated(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{} does not exist (or you may not see it)", what.into()),
        )
    }

    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn unsupported_media_type() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as JSON with `Content-Type: application/json`",
        )
    }

    /// The source cannot be reached (or answer) with its stored settings: a problem of the
    /// source's settings or of the source, not of the API.
    pub fn unreachable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "source-unreachable", detail)
    }

    pub fn too_many(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too-many-requests", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// A server-side failure: logged in full under a fresh id, answered with the id alone.
    pub fn internal(e: &dyn std::fmt::Display) -> ApiError {
        let id = uuid::Uuid::new_v4().to_string();
        tracing::error!(error_id = %id, error = %e, "request failed");
        let mut out = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "the request failed on the server; the API's log has the detail under error id {id}"
            ),
        );
        out.error_id = Some(id);
        out
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn title(&self) -> &'static str {
        match self.slug {
            "bad-request" => "Bad request",
            "validation" => "Invalid request",
            "unauthenticated" => "Authentication required",
            "forbidden" => "Not allowed",
            "not-found" => "Not found",
            "conflict" => "Conflict",
            "too-large" => "Request too large",
            "unsupported-media-type" => "Unsupported media type",
            "unavailable" => "Service unavailable",
            "method-not-allowed" => "Method not allowed",
            "source-unreachable" => "The source cannot be reached",
            "too-many-requests" => "Too many requests",
            _ => "Internal error",
        }
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("https://philotes.dev/problems/{}", self.slug),
            title: self.title().to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            error_id: self.error_id.clone(),
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "this path does not take that method; /api/v1/openapi.json lists what it takes",
        )
    }

    pub fn no_route() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such path; /api/v1/openapi.json lists every path",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"philotes\""),
            );
        }
        r
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e.kind() {
            // The control database is not answering: say so, and let the caller retry.
            ErrorKind::Buffer => {
                tracing::warn!(error = %e, "the control database failed a request");
                ApiError::unavailable(
                    "the control database is not answering; try again shortly (the API's /readyz says when it is back)",
                )
            }
            _ => ApiError::internal(&e),
        }
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;
