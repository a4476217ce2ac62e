//! The request pipeline of DESIGN.md §3, in the contract's check order:
//! path/method (404/405) → key (401) → body size (413) → JSON (400) → model (404)
//! → allow-list (403) → limits (429) → the attempt loop. Azure-style paths take their key from
//! `api-key` (or Bearer), their model from the URL, and need `api-version`.

use std::time::{Instant, UNIX_EPOCH};

use pingora::proxy::Session;

use crate::app::App;
use crate::attempt;
use crate::auth;
use crate::body;
use crate::downstream;
use crate::endpoint::Endpoint;
use crate::errors::ApiError;
use crate::limits::Reservation;
use crate::llm_request::{LlmRequest, Operation};
use crate::models;
use crate::record::RequestRecord;
use crate::request_id;
use crate::trace_context::TraceContext;

/// Answers one client request; the answer (or the client's departure) is in `record`.
pub async fn handle(app: &App, session: &mut Session, record: &mut RequestRecord) {
    if app.drain.is_draining() {
        // Clients move to another instance, or to the successor that holds the
        // sockets now, with their next request.
        session.set_keepalive(None);
    }
    let client_id = session.get_header("x-request-id").map(|v| v.as_bytes());
    record.request_id = request_id::accept_or_generate(client_id);
    if let Err(error) = serve(app, session, record).await {
        downstream::send_error(session, record, &error).await;
    }
}

async fn serve(
    app: &App,
    session: &mut Session,
    record: &mut RequestRecord,
) -> Result<(), ApiError> {
    if app.drain.refuses_requests() {
        return Err(ApiError::shutting_down());
    }
    let config = app.config();
    let header = session.req_header();
    let endpoint = Endpoint::classify(header.method.as_str(), header.uri.path())?;
    let has_api_version = header.uri.query().is_some_and(names_api_version);
    let authorization = session.get_header("authorization").map(|v| v.as_bytes());
    let presented = if endpoint.is_azure() {
        let api_key = session.get_header("api-key").map(|v| v.as_bytes());
        auth::azure_key(api_key, authorization).ok_or_else(|| {
            ApiError::missing_api_key("'api-key: <key>' or 'Authorization: Bearer <key>'")
        })?
    } else {
        auth::bearer(authorization)
            .ok_or_else(|| ApiError::missing_api_key("'Authorization: Bearer <key>'"))?
    };
    let key = auth::find_key(&config, presented).ok_or_else(ApiError::invalid_api_key)?;
    record.key = Some(key.name.clone());
    record.rate_limit = app.state.limits.get(key).map(Reservation::new);
    let created = config_created(&config);
    let (operation, path_model) = match endpoint {
        Endpoint::ListModels => {
            let body = models::list(&config, key, created);
            let _ = downstream::send_json(session, record, 200, &[], body).await;
            return Ok(());
        }
        Endpoint::GetModel(name) => {
            let body = models::get(&config, key, &name, created)?;
            let _ = downstream::send_json(session, record, 200, &[], body).await;
            return Ok(());
        }
        Endpoint::ChatCompletions => (Operation::ChatCompletions, None),
        Endpoint::Embeddings => (Operation::Embeddings, None),
        Endpoint::Deployment(operation, name) => (operation, Some(name)),
    };
    let limit = config.max_request_bytes;
    let reading = Instant::now();
    let body = body::read(session, limit).await;
    record.client_wait += reading.elapsed();
    let body = body.map_err(|e| e.to_api_error(limit))?;
    let mut request = match path_model {
        Some(_) if !has_api_version => return Err(ApiError::missing_api_version()),
        Some(name) => LlmRequest::parse_for_model(operation, body, &name)?,
        None => LlmRequest::parse(operation, body)?,
    };
    request.trace = TraceContext::from_client(&session.req_header().headers);
    record.model = Some(request.model.clone());
    record.stream = Some(request.stream);
    let model = config
        .models
        .get(&request.model)
        .ok_or_else(|| ApiError::model_not_found(&request.model))?;
    record.model_known = true;
    if !key.allows(&request.model) {
        return Err(ApiError::model_not_allowed(&request.model));
    }
    if let Some(reservation) = &mut record.rate_limit {
        reservation.admit(&request)?;
    }
    attempt::run(app, session, record, &request, &config, model).await;
    Ok(())
}

/// Whether a query string carries a non-empty `api-version` (its value is not
/// checked: the upstream's version is the target's, not the client's).
fn names_api_version(query: &str) -> bool {
    query.split('&').any(|pair| {
        pair.strip_prefix("api-version=")
            .is_some_and(|v| !v.is_empty())
    })
}

/// The `created` time reported for configured models: when the config was loaded.
fn config_created(config: &crate::config::Config) -> u64 {
    config
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
