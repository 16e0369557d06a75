//! The client against a local server: redirects, bounded bodies, errors that name the URL.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use super::*;

async fn server() -> String {
    let app = Router::new()
        .route("/data", get(|| async { "0123456789" }))
        .route(
            "/accept",
            get(|headers: axum::http::HeaderMap| async move {
                headers
                    .get(header::ACCEPT)
                    .map(|v| v.to_str().unwrap_or("").to_owned())
                    .unwrap_or_default()
            }),
        )
        .route("/moved", get(|| async { Redirect::permanent("/data") }))
        .route("/rel/moved", get(|| async { Redirect::temporary("data") }))
        .route("/rel/data", get(|| async { "0123456789" }))
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route(
            "/action",
            post(|| async { (axum::http::StatusCode::ACCEPTED, "done").into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn get_reads_a_body_and_cuts_it_at_the_limit() {
    let base = server().await;
    let client = HttpClient::new(1);
    let r = client.get(&format!("{base}/data"), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.content_length(), Some(10));
    assert_eq!(r.read_limited(100).await.unwrap(), b"0123456789");
    let r = client.get(&format!("{base}/data"), None).await.unwrap();
    assert_eq!(r.read_limited(4).await.unwrap(), b"0123");
}

#[tokio::test]
async fn get_sends_the_accept_header() {
    let base = server().await;
    let r = HttpClient::new(1)
        .get(&format!("{base}/accept"), Some("text/plain;version=0.0.4"))
        .await
        .unwrap();
    assert_eq!(
        r.read_limited(100).await.unwrap(),
        b"text/plain;version=0.0.4"
    );
}

#[tokio::test]
async fn get_follows_redirects_but_not_forever() {
    let base = server().await;
    let client = HttpClient::new(1);
    for path in ["/moved", "/rel/moved"] {
        let r = client.get(&format!("{base}{path}"), None).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.read_limited(100).await.unwrap(), b"0123456789", "{path}");
    }
    let e = client
        .get(&format!("{base}/loop"), None)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::Redirects { .. }), "{e}");
}

#[tokio::test]
async fn post_answers_with_the_status() {
    let base = server().await;
    let r = HttpClient::new(1)
        .post(&format!("{base}/action"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = HttpClient::new(1)
        .post(&format!("{base}/data"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn errors_name_the_url_and_the_cause() {
    let client = HttpClient::new(1);
    let e = client
        .get("http://127.0.0.1:1/metrics", None)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::Send { .. }), "{e}");
    assert!(e.to_string().contains("http://127.0.0.1:1/metrics"), "{e}");
    let chain = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains("onnection refused"), "{chain}");
    let e = client.get("not a url", None).await.err().unwrap();
    assert!(matches!(e, ClientError::Url { .. }), "{e}");
}

/// `https://` goes through rustls: a plain-HTTP server behind an https URL fails the
/// handshake (an answer, not a hang), and the URL is named.
#[tokio::test]
async fn https_urls_use_tls() {
    let base = server().await;
    let url = base.replace("http://", "https://") + "/data";
    let e = HttpClient::new(1).get(&url, None).await.err().unwrap();
    assert!(e.to_string().contains(&url), "{e}");
    assert!(
        matches!(e, ClientError::Send { .. } | ClientError::Roots { .. }),
        "{e}"
    );
}

#[test]
fn redirect_targets_resolve_against_the_url() {
    let to = |status: u16, location: &str| {
        let mut h = HeaderMap::new();
        h.insert(LOCATION, HeaderValue::from_str(location).unwrap());
        redirect_target(
            "http://127.0.0.1:9100/a/metrics?x=1",
            StatusCode::from_u16(status).unwrap(),
            &h,
        )
    };
    assert_eq!(to(301, "/m").as_deref(), Some("http://127.0.0.1:9100/m"));
    assert_eq!(to(308, "m2").as_deref(), Some("http://127.0.0.1:9100/a/m2"));
    assert_eq!(
        to(302, "http://other:1/x").as_deref(),
        Some("http://other:1/x")
    );
    assert_eq!(to(200, "/m"), None);
    assert_eq!(to(304, "/m"), None);
    assert_eq!(
        redirect_target("http://h/x", StatusCode::FOUND, &HeaderMap::new()),
        None
    );
}
