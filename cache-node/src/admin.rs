//! The admin HTTP endpoint (`[node] admin_listen`): `/metrics` in Prometheus text format and
//! `/healthz` for load balancers and scripts.

use std::sync::Arc;

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::service::Service;

pub async fn serve(listener: TcpListener, service: Arc<Service>, shutdown: CancellationToken) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz)).with_state(service);
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn metrics(State(service): State<Arc<Service>>) -> impl IntoResponse {
    service.refresh_gauges();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], service.metrics().encode())
}

async fn healthz(State(service): State<Arc<Service>>) -> String {
    format!("ok {}\n", service.id)
}
