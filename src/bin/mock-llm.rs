//! `mock-llm`: a fake OpenAI-compatible inference server in the shape of vLLM, for
//! tests, benchmarks and load tests.
//!
//! Endpoints: `GET /v1/models`, `GET /api/tags` (Ollama's list), `POST /v1/chat/completions`,
//! `POST /v1/completions`, `POST /v1/embeddings` (SSE with `[DONE]`, `usage`,
//! `stream_options.include_usage`), `GET /health`, `GET /stats`, `DELETE /stats`.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use futures_util::stream;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::json;
use sha2::{Digest, Sha256};
use switchyard::mockgen::{self, StreamBuilder, StreamKind};
use tokio::net::TcpListener;

/// Fault injection, per request, through request headers (the gateway forwards them):
///
///   x-mock-status: CODE      answer with this status and an OpenAI error body
///   x-mock-retry-after: V    with x-mock-status: send `Retry-After: V`
///   x-mock-delay-ms: N       wait N ms before sending the response header
///   x-mock-drop-after: N     drop the connection after N body chunks (streams) or
///                            after half the body (non-streamed)
///   x-mock-tokens: N         generate N tokens
///   x-mock-ttft-ms: N        time to the first token
///   x-mock-itl-ms: N         time between tokens
#[derive(Parser, Debug, Clone)]
#[command(
    name = "mock-llm",
    version,
    about = "A fake OpenAI-compatible (vLLM-flavoured) inference server for tests and benchmarks.",
    after_help = "FAULT INJECTION (request headers, forwarded by the gateway):\n  x-mock-status: CODE     answer with this status and an OpenAI error body\n  x-mock-retry-after: V   with x-mock-status: send Retry-After: V\n  x-mock-delay-ms: N      wait N ms before the response header\n  x-mock-drop-after: N    drop the connection after N body chunks (non-streamed: after half the body)\n  x-mock-tokens: N        generate N tokens\n  x-mock-ttft-ms: N       time to first token\n  x-mock-itl-ms: N        time between tokens\n\nGET /stats returns {\"requests\", \"received_bytes\", \"bodies\":[{\"len\",\"sha256\"}], \"last_headers\", \"last_uri\"}; DELETE /stats resets it."
)]
struct Args {
    /// Address to listen on (port 0 picks one; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Model name to serve (repeatable).
    #[arg(long = "model")]
    models: Vec<String>,
    /// Time to first token, ms.
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Inter-token latency, ms.
    #[arg(long, default_value_t = 0)]
    itl_ms: u64,
    /// Tokens per completion.
    #[arg(long, default_value_t = 16)]
    tokens: usize,
    /// Answer every inference request with this status (to test fallbacks).
    #[arg(long)]
    fail_status: Option<u16>,
    /// Drop every connection after this many body chunks, as `x-mock-drop-after` does.
    #[arg(long)]
    drop_after: Option<u64>,
    /// With a failure status: send `Retry-After` with this many seconds.
    #[arg(long)]
    retry_after: Option<u64>,
    /// Dimensions of embedding vectors.
    #[arg(long, default_value_t = 8)]
    embedding_dim: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Request bodies remembered by /stats.
    #[arg(long, default_value_t = 1000)]
    keep_bodies: usize,
}

#[derive(Default)]
struct Stats {
    bodies: Vec<(usize, String)>,
    last_headers: BTreeMap<String, String>,
    last_uri: String,
}

struct Mock {
    args: Args,
    requests: AtomicU64,
    received: AtomicU64,
    seq: AtomicU64,
    stats: Mutex<Stats>,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn json_response(status: u16, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn header_u64(req: &http::request::Parts, name: &str) -> Option<u64> {
    req.headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Mock {
    fn models(&self) -> Vec<String> {
        if self.args.models.is_empty() {
            vec!["mock-model".to_string()]
        } else {
            self.args.models.clone()
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        match (&parts.method, path.as_str()) {
            (&Method::GET, "/health") => {
                return Ok(json_response(200, b"{\"status\":\"ok\"}".to_vec()))
            }
            (&Method::GET, "/v1/models") => {
                let models = self.models();
                let list =
                    mockgen::model_list(models.iter().map(|m| (m.as_str(), "vllm")), now_secs());
                return Ok(json_response(200, list));
            }
            (&Method::GET, "/api/tags") => {
                let models: Vec<_> = self
                    .models()
                    .into_iter()
                    .map(|m| json!({"name": m, "model": m}))
                    .collect();
                return Ok(json_response(
                    200,
                    serde_json::to_vec(&json!({"models": models})).unwrap_or_default(),
                ));
            }
            (&Method::GET, "/stats") => {
                let s = self.stats.lock();
                let bodies: Vec<_> = s
                    .bodies
                    .iter()
                    .map(|(l, h)| json!({"len": l, "sha256": h}))
                    .collect();
                let v = json!({
                    "requests": self.requests.load(Ordering::Relaxed),
                    "received_bytes": self.received.load(Ordering::Relaxed),
                    "bodies": bodies,
                    "last_headers": s.last_headers,
                    "last_uri": s.last_uri,
                });
                return Ok(json_response(
                    200,
                    serde_json::to_vec(&v).unwrap_or_default(),
                ));
            }
            (&Method::DELETE, "/stats") => {
                self.requests.store(0, Ordering::Relaxed);
                self.received.store(0, Ordering::Relaxed);
                *self.stats.lock() = Stats::default();
                return Ok(json_response(200, b"{}".to_vec()));
            }
            _ => {}
        }
        let kind = match (&parts.method, path.as_str()) {
            (&Method::POST, "/v1/chat/completions") => Some(StreamKind::Chat),
            (&Method::POST, "/v1/completions") => Some(StreamKind::Text),
            (&Method::POST, "/v1/embeddings") => None,
            _ => {
                let e = switchyard_filters::error::error_json(
                    "not found",
                    "invalid_request_error",
                    None,
                    Some("not_found"),
                );
                return Ok(json_response(404, e));
            }
        };
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(json_response(400, b"{}".to_vec())),
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.received
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        {
            let mut s = self.stats.lock();
            if s.bodies.len() >= self.args.keep_bodies {
                s.bodies.remove(0);
            }
            s.bodies
                .push((body.len(), hex::encode(Sha256::digest(&body))));
            s.last_uri = parts.uri.to_string();
            s.last_headers = parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
        }

        if let Some(ms) = header_u64(&parts, "x-mock-delay-ms") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let status = header_u64(&parts, "x-mock-status")
            .map(|s| s as u16)
            .or(self.args.fail_status);
        if let Some(code) = status.filter(|c| *c != 200) {
            let e = switchyard_filters::error::error_json(
                &format!("mock-llm injected status {code}"),
                "server_error",
                None,
                Some("mock_fault"),
            );
            let mut r = json_response(code, e);
            let retry_after = parts
                .headers
                .get("x-mock-retry-after")
                .cloned()
                .or_else(|| self.args.retry_after.map(hyper::header::HeaderValue::from));
            if let Some(v) = retry_after {
                r.headers_mut().insert("retry-after", v);
            }
            return Ok(r);
        }

        let v: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                let e = switchyard_filters::error::error_json(
                    &format!("bad json: {e}"),
                    "invalid_request_error",
                    None,
                    None,
                );
                return Ok(json_response(400, e));
            }
        };
        let model = v
            .get("model")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        if !self.models().contains(&model) {
            let e = switchyard_filters::error::error_json(
                &format!("The model `{model}` does not exist."),
                "NotFoundError",
                Some("model"),
                Some("model_not_found"),
            );
            return Ok(json_response(404, e));
        }
        let prompt = mockgen::estimate_prompt_tokens(body.len());
        let drop_after = header_u64(&parts, "x-mock-drop-after").or(self.args.drop_after);
        let Some(kind) = kind else {
            let n = mockgen::embedding_inputs(&body);
            let seed = body
                .iter()
                .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)));
            let doc = mockgen::embeddings(&model, n, self.args.embedding_dim, seed, prompt);
            return Ok(self.maybe_truncated(doc, drop_after));
        };

        let n = header_u64(&parts, "x-mock-tokens").map_or(self.args.tokens, |n| n as usize);
        let ttft = Duration::from_millis(
            header_u64(&parts, "x-mock-ttft-ms").unwrap_or(self.args.ttft_ms),
        );
        let itl =
            Duration::from_millis(header_u64(&parts, "x-mock-itl-ms").unwrap_or(self.args.itl_ms));
        let id = format!(
            "{}-{}",
            if kind == StreamKind::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            },
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let created = now_secs();
        let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
        if !stream {
            let wait = ttft + itl * (n.saturating_sub(1) as u32);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let text = mockgen::canned_tokens(n).concat();
            let doc = match kind {
                StreamKind::Chat => {
                    mockgen::chat_completion(&id, &model, created, &text, prompt, n as u64)
                }
                StreamKind::Text => {
                    mockgen::text_completion(&id, &model, created, &text, prompt, n as u64)
                }
            };
            return Ok(self.maybe_truncated(doc, drop_after));
        }

        let include_usage = v
            .pointer("/stream_options/include_usage")
            .and_then(|u| u.as_bool())
            .unwrap_or(false);
        // Events are made one at a time as the stream is polled, so long streams
        // (thousands of tokens) cost nothing up front.
        let gen = EventGen {
            id,
            model,
            created,
            kind,
            include_usage,
            tokens: n,
            prompt,
            ttft,
            itl,
        };
        let limit = drop_after.map_or(usize::MAX, |d| d as usize);
        let s = stream::unfold((gen, 0usize), move |(gen, sent)| async move {
            if sent >= limit {
                if sent == limit {
                    let err = std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "mock-llm: injected drop",
                    );
                    return Some((Err(err), (gen, usize::MAX)));
                }
                return None;
            }
            let (delay, chunk) = gen.event(sent)?;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((Ok(Frame::data(chunk)), (gen, sent + 1)))
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(s)));
        let h = r.headers_mut();
        h.insert(
            "content-type",
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            "cache-control",
            hyper::header::HeaderValue::from_static("no-cache"),
        );
        Ok(r)
    }

    /// A JSON response, cut in half with the connection dropped when asked.
    fn maybe_truncated(&self, doc: Vec<u8>, drop_after: Option<u64>) -> Response<Body> {
        if drop_after.is_none() {
            return json_response(200, doc);
        }
        let len = doc.len();
        let half = Bytes::from(doc).slice(..len / 2);
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(half)),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "mock-llm: injected drop",
            )),
        ];
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream::iter(frames))));
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r.headers_mut()
            .insert("content-length", hyper::header::HeaderValue::from(len));
        r
    }
}

/// The events of one streamed answer, in vLLM's order: role (chat), one per token,
/// finish, usage (when asked), `[DONE]`.
struct EventGen {
    id: String,
    model: String,
    created: u64,
    kind: StreamKind,
    include_usage: bool,
    tokens: usize,
    prompt: u64,
    ttft: Duration,
    itl: Duration,
}

impl EventGen {
    /// Event number `k` and the delay before it; `None` after the last.
    fn event(&self, k: usize) -> Option<(Duration, Bytes)> {
        let b = StreamBuilder {
            id: &self.id,
            model: &self.model,
            created: self.created,
            kind: self.kind,
            include_usage: self.include_usage,
        };
        let role = usize::from(self.kind == StreamKind::Chat);
        if k < role {
            return b.role_chunk().map(|r| (Duration::ZERO, Bytes::from(r)));
        }
        let t = k - role;
        if t < self.tokens {
            let word = mockgen::canned_token(t, self.tokens);
            let delay = if t == 0 { self.ttft } else { self.itl };
            return Some((delay, Bytes::from(b.token_chunk(&word))));
        }
        let mut rest = t - self.tokens;
        if rest == 0 {
            return Some((Duration::ZERO, Bytes::from(b.finish_chunk())));
        }
        rest -= 1;
        if self.include_usage {
            if rest == 0 {
                let u = b.usage_chunk(self.prompt, self.tokens as u64);
                return Some((Duration::ZERO, Bytes::from(u)));
            }
            rest -= 1;
        }
        (rest == 0).then(|| (Duration::ZERO, Bytes::from_static(mockgen::SSE_DONE)))
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("mock-llm listening on {addr}");
    let mock = Arc::new(Mock {
        args,
        requests: AtomicU64::new(0),
        received: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        stats: Mutex::new(Stats::default()),
    });
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let mock = mock.clone();
        // A test server: one task per connection, ended with the connection.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            let svc = service_fn(move |req| mock.clone().handle(req));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
