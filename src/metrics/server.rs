//! The admin port: `/healthz` (the process answers), `/readyz` (the index is synced: every
//! watcher has listed its kind once, no watch is failing, and the API server answers the
//! Lease calls) and `/metrics`: OpenMetrics text to a scraper that asks
//! for it (Prometheus does), the classic text format 0.0.4 otherwise (curl, `promtool check
//! metrics`).

use super::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(m): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if m.index_synced.get() != 1 {
        (StatusCode::SERVICE_UNAVAILABLE, "index not synced yet\n")
    } else if m.api_answering.get() != 1 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the API server has not answered the Lease within the renew deadline\n",
        )
    } else if m.watches_failing.get() > 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "watches failing: the index may be stale\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn metrics(State(m): State<Arc<Metrics>>, headers: header::HeaderMap) -> impl IntoResponse {
    let open = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if open {
        ([(header::CONTENT_TYPE, OPENMETRICS)], m.encode())
    } else {
        ([(header::CONTENT_TYPE, CLASSIC)], classic(&m.encode()))
    }
}

/// OpenMetrics text in the classic format: a counter's `# HELP` and `# TYPE` name its sample
/// (`x_total`, where OpenMetrics names the family `x`), no `# UNIT`, no `# EOF`.
pub fn classic(open: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in open.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|t| t.strip_suffix(" counter"))
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Binds `addr` and serves the admin endpoints on the current runtime. Returns the address
/// bound (port 0 picks one) or why it could not bind.
pub async fn serve(addr: SocketAddr, metrics_: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(metrics_);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let m = Metrics::new();
        m.eviction("evicted");
        m.plan_duration.observe(0.1);
        let text = classic(&m.encode());
        assert!(text.contains("# HELP stowage_evictions_total Eviction requests by result"));
        assert!(text.contains("# TYPE stowage_evictions_total counter\n"));
        assert!(text.contains("stowage_evictions_total{result=\"evicted\"} 1\n"));
        assert!(text.contains("# TYPE stowage_plan_duration_seconds histogram\n"));
        assert!(!text.contains("# EOF") && !text.contains("# TYPE stowage_evictions counter"));
    }

    #[test]
    fn ready_only_when_synced_watching_and_answered() {
        use futures::FutureExt;
        let m = Arc::new(Metrics::new());
        let status = |m: &Arc<Metrics>| readyz(State(m.clone())).now_or_never().unwrap().0;
        assert_eq!(status(&m), StatusCode::SERVICE_UNAVAILABLE, "not synced");
        m.index_synced.set(1);
        assert_eq!(status(&m), StatusCode::OK);
        m.api_answering.set(0);
        assert_eq!(
            status(&m),
            StatusCode::SERVICE_UNAVAILABLE,
            "Lease unanswered"
        );
        m.api_answering.set(1);
        m.watches_failing.set(1);
        assert_eq!(
            status(&m),
            StatusCode::SERVICE_UNAVAILABLE,
            "a watch failing"
        );
    }
}
