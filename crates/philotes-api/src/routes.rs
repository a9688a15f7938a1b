//! Every route, once: its method, path and the scope it needs. The router is built from this
//! list, the guard reads the scope from it, and a test checks it against the OpenAPI document
//! the handlers generate — so a route cannot be served without being documented, documented
//! without being served, or served without a scope by accident.

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, patch, post};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::auth::{Guard, Scope, guard};
use crate::{AppState, history, keys, pipelines, sources, system, users};

/// A route of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    OpenApi,
    Docs,
    Version,
    Audit,
    ListSources,
    CreateSource,
    GetSource,
    UpdateSource,
    DeleteSource,
    TestSource,
    SourceTables,
    ListApiKeys,
    CreateApiKey,
    RevokeApiKey,
    ListPipelines,
    CreatePipeline,
    GetPipeline,
    UpdatePipeline,
    DeletePipeline,
    StartPipeline,
    StopPipeline,
    PausePipeline,
    ResumePipeline,
    PipelineStatus,
    ResyncPipeline,
    ListDeadLetters,
    SkipDeadLetter,
    RetryDeadLetter,
    Login,
    Logout,
    Me,
    VerifyPipeline,
    ListVerifyRuns,
    GetVerifyRun,
    PipelineHistory,
    PipelineCommits,
    ListUsers,
    CreateUser,
    UpdateUser,
    DeleteUser,
    ChangePassword,
}

impl Route {
    pub const ALL: &'static [Route] = &[
        Route::Healthz,
        Route::Readyz,
        Route::OpenApi,
        Route::Docs,
        Route::Version,
        Route::Audit,
        Route::ListSources,
        Route::CreateSource,
        Route::GetSource,
        Route::UpdateSource,
        Route::DeleteSource,
        Route::TestSource,
        Route::SourceTables,
        Route::ListApiKeys,
        Route::CreateApiKey,
        Route::RevokeApiKey,
        Route::ListPipelines,
        Route::CreatePipeline,
        Route::GetPipeline,
        Route::UpdatePipeline,
        Route::DeletePipeline,
        Route::StartPipeline,
        Route::StopPipeline,
        Route::PausePipeline,
        Route::ResumePipeline,
        Route::PipelineStatus,
        Route::ResyncPipeline,
        Route::ListDeadLetters,
        Route::SkipDeadLetter,
        Route::RetryDeadLetter,
        Route::Login,
        Route::Logout,
        Route::Me,
        Route::VerifyPipeline,
        Route::ListVerifyRuns,
        Route::GetVerifyRun,
        Route::PipelineHistory,
        Route::PipelineCommits,
        Route::ListUsers,
        Route::CreateUser,
        Route::UpdateUser,
        Route::DeleteUser,
        Route::ChangePassword,
    ];

    pub fn method(self) -> Method {
        use Route::*;
        match self {
            Healthz | Readyz | OpenApi | Docs | Version | Audit | ListSources | GetSource
            | SourceTables | ListApiKeys | ListPipelines | GetPipeline | PipelineStatus
            | ListDeadLetters | Me | ListVerifyRuns | GetVerifyRun | PipelineHistory
            | PipelineCommits | ListUsers => Method::GET,
            CreateSource | TestSource | CreateApiKey | CreatePipeline | StartPipeline
            | StopPipeline | PausePipeline | ResumePipeline | ResyncPipeline | SkipDeadLetter
            | RetryDeadLetter | Login | Logout | VerifyPipeline | CreateUser | ChangePassword => {
                Method::POST
            }
            UpdateSource | UpdatePipeline | UpdateUser => Method::PATCH,
            DeleteSource | RevokeApiKey | DeletePipeline | DeleteUser => Method::DELETE,
        }
    }

    pub fn path(self) -> &'static str {
        use Route::*;
        match self {
            Healthz => "/healthz",
            Readyz => "/readyz",
            OpenApi => "/api/v1/openapi.json",
            Docs => "/api/v1/docs",
            Version => "/api/v1/version",
            Audit => "/api/v1/audit",
            ListSources | CreateSource => "/api/v1/sources",
            GetSource | UpdateSource | DeleteSource => "/api/v1/sources/{id}",
            TestSource => "/api/v1/sources/{id}/test",
            SourceTables => "/api/v1/sources/{id}/tables",
            ListApiKeys | CreateApiKey => "/api/v1/api-keys",
            RevokeApiKey => "/api/v1/api-keys/{id}",
            ListPipelines | CreatePipeline => "/api/v1/pipelines",
            GetPipeline | UpdatePipeline | DeletePipeline => "/api/v1/pipelines/{id}",
            StartPipeline => "/api/v1/pipelines/{id}/start",
            StopPipeline => "/api/v1/pipelines/{id}/stop",
            PausePipeline => "/api/v1/pipelines/{id}/pause",
            ResumePipeline => "/api/v1/pipelines/{id}/resume",
            PipelineStatus => "/api/v1/pipelines/{id}/status",
            ResyncPipeline => "/api/v1/pipelines/{id}/resync",
            ListDeadLetters => "/api/v1/pipelines/{id}/dead-letters",
            SkipDeadLetter => "/api/v1/pipelines/{id}/dead-letters/{letter}/skip",
            RetryDeadLetter => "/api/v1/pipelines/{id}/dead-letters/{letter}/retry",
            Login => "/api/v1/auth/login",
            Logout => "/api/v1/auth/logout",
            Me => "/api/v1/auth/me",
            VerifyPipeline => "/api/v1/pipelines/{id}/verify",
            ListVerifyRuns => "/api/v1/pipelines/{id}/verify-runs",
            GetVerifyRun => "/api/v1/pipelines/{id}/verify-runs/{run}",
            PipelineHistory => "/api/v1/pipelines/{id}/history",
            PipelineCommits => "/api/v1/pipelines/{id}/commits",
            ListUsers | CreateUser => "/api/v1/users",
            UpdateUser | DeleteUser => "/api/v1/users/{id}",
            ChangePassword => "/api/v1/auth/password",
        }
    }

    /// The scope a caller needs; `None`: no authentication (health and the contract only).
    pub fn scope(self) -> Option<Scope> {
        use Route::*;
        match self {
            // Logging in is how a person gets authenticated.
            Healthz | Readyz | OpenApi | Docs | Login => None,
            Version | ListSources | GetSource | SourceTables | ListPipelines | GetPipeline
            | PipelineStatus | ListDeadLetters | Logout | Me | ListVerifyRuns | GetVerifyRun
            | PipelineHistory | PipelineCommits | ChangePassword => Some(Scope::Read),
            TestSource | StartPipeline | StopPipeline | PausePipeline | ResumePipeline
            | ResyncPipeline | SkipDeadLetter | RetryDeadLetter | VerifyPipeline => {
                Some(Scope::Operate)
            }
            CreateSource | UpdateSource | DeleteSource | Audit | ListApiKeys | CreateApiKey
            | RevokeApiKey | CreatePipeline | UpdatePipeline | DeletePipeline | ListUsers
            | CreateUser | UpdateUser | DeleteUser => Some(Scope::Admin),
        }
    }

    fn handler(self) -> MethodRouter<AppState> {
        use Route::*;
        match self {
            Healthz => get(system::healthz),
            Readyz => get(system::readyz),
            OpenApi => get(system::spec),
            Docs => get(system::docs),
            Version => get(system::version),
            Audit => get(system::audit),
            ListSources => get(sources::list),
            CreateSource => post(sources::create),
            GetSource => get(sources::get),
            UpdateSource => patch(sources::update),
            DeleteSource => delete(sources::delete),
            TestSource => post(sources::test),
            SourceTables => get(sources::tables),
            ListApiKeys => get(keys::list),
            CreateApiKey => post(keys::create),
            RevokeApiKey => delete(keys::revoke),
            ListPipelines => get(pipelines::list),
            CreatePipeline => post(pipelines::create),
            GetPipeline => get(pipelines::get),
            UpdatePipeline => patch(pipelines::update),
            DeletePipeline => delete(pipelines::delete),
            StartPipeline => post(pipelines::start),
            StopPipeline => post(pipelines::stop),
            PausePipeline => post(pipelines::pause),
            ResumePipeline => post(pipelines::resume),
            PipelineStatus => get(pipelines::status),
            ResyncPipeline => post(pipelines::resync),
            ListDeadLetters => get(pipelines::dead_letters),
            SkipDeadLetter => post(pipelines::skip),
            RetryDeadLetter => post(pipelines::retry),
            Login => post(users::login),
            Logout => post(users::logout),
            Me => get(users::me),
            VerifyPipeline => post(pipelines::verify),
            ListVerifyRuns => get(pipelines::verify_runs),
            GetVerifyRun => get(pipelines::verify_run),
            PipelineHistory => get(history::history),
            PipelineCommits => get(history::commits),
            ListUsers => get(users::list),
            CreateUser => post(users::create),
            UpdateUser => patch(users::update),
            DeleteUser => delete(users::delete),
            ChangePassword => post(users::change_password),
        }
    }
}

/// The API's router: every [`Route`] behind its guard.
pub fn router(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for &route in Route::ALL {
        let mut handler = route.handler();
        if let Some(scope) = route.scope() {
            handler = handler.route_layer(axum::middleware::from_fn_with_state(
                Guard {
                    state: state.clone(),
                    scope,
                },
                guard,
            ));
        }
        router = router.route(route.path(), handler);
    }
    router
        .method_not_allowed_fallback(system::wrong_method)
        .fallback(system::fallback)
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Philotes API",
        description = "The control plane of Philotes: PostgreSQL to Apache Iceberg change data capture. Authenticate with an API key: `Authorization: Bearer phk_…`. Errors are RFC 9457 problem details.",
        license(name = "Apache-2.0")
    ),
    paths(
        system::healthz,
        system::readyz,
        system::spec,
        system::docs,
        system::version,
        system::audit,
        sources::list,
        sources::create,
        sources::get,
        sources::update,
        sources::delete,
        sources::test,
        sources::tables,
        keys::list,
        keys::create,
        keys::revoke,
        pipelines::list,
        pipelines::create,
        pipelines::get,
        pipelines::update,
        pipelines::delete,
        pipelines::start,
        pipelines::stop,
        pipelines::pause,
        pipelines::resume,
        pipelines::status,
        pipelines::resync,
        pipelines::dead_letters,
        pipelines::skip,
        pipelines::retry,
        users::login,
        users::logout,
        users::me,
        pipelines::verify,
        pipelines::verify_runs,
        pipelines::verify_run,
        history::history,
        history::commits,
        users::list,
        users::create,
        users::update,
        users::delete,
        users::change_password,
    ),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "system", description = "Health, versions, the contract, the audit log"),
        (name = "sources", description = "PostgreSQL databases to replicate"),
        (name = "pipelines", description = "A source's publication into the lake, run by ingest and the workers"),
        (name = "api-keys", description = "Keys for scripts and the CLI"),
        (name = "auth", description = "People: log in for a session cookie, log out, who am I, a new password"),
        (name = "users", description = "People who use the dashboard, and their roles (admins only)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "api_key",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("An API key, `phk_<id>_<secret>`"))
                        .build(),
                ),
            );
        }
    }
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The OpenAPI document as checked in (`docs/api/openapi.json`, `philotes openapi`).
pub fn openapi_json() -> String {
    let mut s = openapi().to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn operations() -> BTreeSet<(String, String, bool)> {
        let doc = openapi();
        let v = serde_json::to_value(&doc).unwrap_or_default();
        let mut out = BTreeSet::new();
        if let Some(paths) = v["paths"].as_object() {
            for (path, item) in paths {
                for (method, op) in item.as_object().into_iter().flatten() {
                    // `security: [{}]` (or an empty list) marks an operation without auth.
                    let open = op["security"].as_array().is_some_and(|s| {
                        s.iter()
                            .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
                    });
                    out.insert((method.to_uppercase(), path.clone(), open));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_is_a_route() {
        let routes: BTreeSet<(String, String, bool)> = Route::ALL
            .iter()
            .map(|r| {
                (
                    r.method().to_string(),
                    r.path().to_string(),
                    r.scope().is_none(),
                )
            })
            .collect();
        assert_eq!(routes.len(), Route::ALL.len(), "a route is listed twice");
        assert_eq!(routes, operations());
    }

    #[test]
    fn only_health_and_the_contract_are_open() {
        let open: Vec<&str> = Route::ALL
            .iter()
            .filter(|r| r.scope().is_none())
            .map(|r| r.path())
            .collect();
        assert_eq!(
            open,
            [
                "/healthz",
                "/readyz",
                "/api/v1/openapi.json",
                "/api/v1/docs",
                "/api/v1/auth/login"
            ]
        );
    }

    #[test]
    fn the_checked_in_contract_is_the_code_s() {
        let checked_in = include_str!("../../../docs/api/openapi.json");
        assert!(
            checked_in == openapi_json(),
            "docs/api/openapi.json differs from the API's code: run `cargo run -p philotes-cli -- openapi > docs/api/openapi.json` and review the diff"
        );
    }
}
