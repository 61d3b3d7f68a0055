//! `mock-llm`: a fake inference server for tests, benchmarks and load tests. It speaks
//! OpenAI's API in the shape of vLLM and Anthropic's Messages API.
//!
//! Endpoints: `GET /v1/models`, `GET /api/tags` (Ollama's list), `POST /v1/chat/completions`,
//! `POST /v1/completions`, `POST /v1/embeddings` (SSE with `[DONE]`, `usage`,
//! `stream_options.include_usage`), `POST /v1/messages` and
//! `POST /v1/messages/count_tokens` (Anthropic's wire format: `event:`-named SSE frames,
//! error bodies of type `overloaded_error` and the rest), `GET /health`, `GET /stats`,
//! `DELETE /stats`. `--dialect` makes it an OpenAI-only or an Anthropic-only upstream.
//!
//! To be run as a managed backend's container it also plays the servers' lifecycles:
//! `--mode vllm|sglang|ollama` (each one's health and model endpoints), `--startup-ms`
//! (503 while "loading"), and faults: `--exit-after-ms`, `--hang-health`,
//! `--fail-health-after-ms`.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::stream::{self, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::json;
use sha2::{Digest, Sha256};
use switchyard::mockgen::{self, StreamBuilder, StreamKind};
use switchyard::mockgen_anthropic::{self as anth, Answer, MessageEvents};
use tokio::net::TcpListener;

const AFTER_HELP: &str = "\
FAULT INJECTION (request headers, forwarded by the gateway; both dialects):
  x-mock-status: CODE        answer with this status and an error body: OpenAI's shape, or on
                             /v1/messages Anthropic's with the type of the status (400
                             invalid_request_error, 401 authentication_error, 403 permission_error,
                             404 not_found_error, 429 rate_limit_error, 500 api_error, 529
                             overloaded_error)
  x-mock-retry-after: V      with x-mock-status: send Retry-After: V
  x-mock-delay-ms: N         wait N ms before the response header
  x-mock-drop-after: N       drop the connection after N body chunks (streams: SSE events; non-streamed:
                             after half the body)
  x-mock-error-after: N      Anthropic stream: after N content_block_deltas send `event: error`
                             (overloaded_error) and end the stream
  x-mock-tokens: N           generate N text tokens (Anthropic: at most max_tokens, then
                             stop_reason max_tokens)
  x-mock-ttft-ms: N          time to first token
  x-mock-itl-ms: N           time between tokens

ANSWER SHAPE (request headers):
  x-mock-tool-calls: N       when the request has `tools`: the text, then N calls of the offered tools
                             in turn with small arguments fitting their schema, streamed in fragments
                             cut mid-JSON (OpenAI chat: parallel tool_calls, finish_reason tool_calls;
                             Anthropic: tool_use blocks, stop_reason tool_use)
  x-mock-reasoning: N        OpenAI chat: N reasoning_content chunks before the content
  x-mock-interleave: 1       OpenAI chat stream: interleave the argument fragments of the first two
                             tool calls
  x-mock-thinking: N         Anthropic: a thinking block of N thinking_deltas and a signature_delta first
  x-mock-stop-reason: R      Anthropic: send this stop_reason (refusal, pause_turn,
                             model_context_window_exceeded, or any string)
  x-mock-cache-read: N       Anthropic usage: cache_read_input_tokens
  x-mock-cache-creation: N   Anthropic usage: cache_creation_input_tokens
  x-mock-delta-usage: full   Anthropic stream: message_delta repeats the input-side usage beside
                             output_tokens

GET /stats returns {\"requests\", \"received_bytes\", \"bodies\":[{\"len\",\"sha256\"}], \"last_headers\", \"last_uri\"}
(every POST to an inference route counts, including one answered 401 or 404 by --require-api-key or
--dialect; last_headers holds anthropic-version and anthropic-beta as sent); DELETE /stats resets it.";

/// Which API the server speaks: both, or one alone (the other's routes answer 404, as
/// an OpenAI-only or an Anthropic-only upstream does).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// OpenAI routes only; `/v1/messages` answers 404.
    Openai,
    /// Anthropic routes only; OpenAI routes answer 404 and `/v1/models` has Anthropic's
    /// list shape.
    Anthropic,
    /// Both.
    Both,
}

/// Fault injection and the answer's shape are chosen per request through request
/// headers (the gateway forwards them); `--help` lists them.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "mock-llm",
    version,
    about = "A fake inference server speaking OpenAI's API (vLLM-flavoured) and Anthropic's Messages API, for tests and benchmarks.",
    after_help = AFTER_HELP
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
    /// Which API to speak.
    #[arg(long, value_enum, default_value_t = Dialect::Both)]
    dialect: Dialect,
    /// Require this key: `x-api-key: KEY` on /v1/messages (else 401
    /// `authentication_error`), `Authorization: Bearer KEY` on the OpenAI routes (else 401
    /// `invalid_api_key`).
    #[arg(long, value_name = "KEY")]
    require_api_key: Option<String>,
    /// Which inference server to play: its health and model endpoints.
    #[arg(long, value_enum, default_value_t = Mode::Vllm)]
    mode: Mode,
    /// Until this many ms after start, `/health` and every inference route answer 503
    /// (an engine still loading).
    #[arg(long, default_value_t = 0)]
    startup_ms: u64,
    /// Exit with status 1 this many ms after start (a crashing backend).
    #[arg(long)]
    exit_after_ms: Option<u64>,
    /// `/health` (and Ollama's `/`) never answers (a hung backend).
    #[arg(long)]
    hang_health: bool,
    /// From this many ms after start, `/health` answers 500 (a dead engine).
    #[arg(long)]
    fail_health_after_ms: Option<u64>,
    /// Time `/health` takes (SGLang's runs a one-token generation).
    #[arg(long, default_value_t = 0)]
    health_ms: u64,
}

/// The inference server played.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// vLLM: `/health` 200 once the engine is up.
    Vllm,
    /// SGLang: `/health` generates a token (takes `--health-ms`).
    Sglang,
    /// Ollama: `/` ("Ollama is running"), `/api/tags`, `/api/ps`, `/api/pull` (NDJSON
    /// progress; a model named `missing…` fails), `/api/generate` without a prompt
    /// (loads), `DELETE /api/delete`.
    Ollama,
}

/// Which inference route a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// An OpenAI route; `None` is embeddings.
    OpenAi(Option<StreamKind>),
    /// Anthropic `/v1/messages`.
    Messages,
    /// Anthropic `/v1/messages/count_tokens`.
    CountTokens,
}

#[derive(Default)]
struct Stats {
    bodies: Vec<(usize, String)>,
    last_headers: BTreeMap<String, String>,
    last_uri: String,
}

struct Mock {
    args: Args,
    started: std::time::Instant,
    /// Ollama mode: the local models (pulled and deleted at run time).
    ollama: Mutex<Vec<String>>,
    /// Ollama mode: the loaded ones.
    loaded: Mutex<Vec<String>>,
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
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn sse_response(body: Body, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

fn header_u64(req: &http::request::Parts, name: &str) -> Option<u64> {
    req.headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_str<'a>(req: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    Some(req.headers.get(name)?.to_str().ok()?.trim())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn injected_drop() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "mock-llm: injected drop",
    )
}

fn openai_not_found() -> Response<Body> {
    let e = switchyard_filters::error::error_json(
        "not found",
        "invalid_request_error",
        None,
        Some("not_found"),
    );
    json_response(404, e)
}

/// Time to first token and between tokens for this request.
fn timing(parts: &http::request::Parts, args: &Args) -> (Duration, Duration) {
    let ttft = header_u64(parts, "x-mock-ttft-ms").unwrap_or(args.ttft_ms);
    let itl = header_u64(parts, "x-mock-itl-ms").unwrap_or(args.itl_ms);
    (Duration::from_millis(ttft), Duration::from_millis(itl))
}

/// What a non-streamed answer waits for: the time its `events` token events would take
/// (at least the time to first token).
async fn wait_for_tokens(ttft: Duration, itl: Duration, events: usize) {
    let wait = ttft + itl * (events.saturating_sub(1) as u32);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

impl Mock {
    fn models(&self) -> Vec<String> {
        if self.args.mode == Mode::Ollama {
            return self.ollama.lock().clone();
        }
        if self.args.models.is_empty() {
            vec!["mock-model".to_string()]
        } else {
            self.args.models.clone()
        }
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The `Retry-After` to send with an injected failure, if any.
    fn retry_after(&self, parts: &http::request::Parts) -> Option<HeaderValue> {
        parts
            .headers
            .get("x-mock-retry-after")
            .cloned()
            .or_else(|| self.args.retry_after.map(HeaderValue::from))
    }

    /// The injected failure status of this request, if any.
    fn fault_status(&self, parts: &http::request::Parts) -> Option<u16> {
        header_u64(parts, "x-mock-status")
            .map(|s| s as u16)
            .or(self.args.fail_status)
            .filter(|c| *c != 200)
    }

    /// An Anthropic error response, with the `request-id` header every API answer has.
    fn anthropic_error(&self, status: u16, error_type: &str, message: &str) -> Response<Body> {
        let rid = format!("req_mock{:012}", self.next_seq());
        let r = json_response(status, anth::error_body(error_type, message, &rid));
        with_request_id(r, &rid)
    }

    /// A 404 in the shape of the dialect the server speaks.
    fn not_found(&self) -> Response<Body> {
        if self.args.dialect == Dialect::Anthropic {
            self.anthropic_error(404, "not_found_error", "Not Found")
        } else {
            openai_not_found()
        }
    }

    fn record(&self, parts: &http::request::Parts, body: &Bytes) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.received
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let mut s = self.stats.lock();
        if s.bodies.len() >= self.args.keep_bodies {
            s.bodies.remove(0);
        }
        s.bodies
            .push((body.len(), hex::encode(Sha256::digest(body))));
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

    fn since_start(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Health, start-up and Ollama's read routes; `None`: not one of these.
    async fn lifecycle(&self, parts: &http::request::Parts) -> Option<Response<Body>> {
        let path = parts.uri.path();
        let ollama = self.args.mode == Mode::Ollama;
        let health = path == "/health" || (ollama && path == "/" && parts.method == Method::GET);
        if health && self.args.hang_health {
            std::future::pending::<()>().await;
        }
        let starting = self.since_start() < self.args.startup_ms;
        if starting && (health || path.starts_with("/v1/") || path.starts_with("/api/")) {
            return Some(json_response(
                503,
                b"{\"error\":\"the engine is starting\"}".to_vec(),
            ));
        }
        if health {
            if self
                .args
                .fail_health_after_ms
                .is_some_and(|t| self.since_start() >= t)
            {
                return Some(json_response(500, b"{\"error\":\"engine dead\"}".to_vec()));
            }
            if self.args.health_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.args.health_ms)).await;
            }
            return Some(if ollama {
                let mut r = Response::new(full("Ollama is running"));
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("text/plain"));
                r
            } else {
                json_response(200, b"{\"status\":\"ok\"}".to_vec())
            });
        }
        if ollama && parts.method == Method::GET && path == "/api/ps" {
            let models: Vec<_> = self
                .loaded
                .lock()
                .iter()
                .map(|m| json!({"name": m, "model": m, "size_vram": 0}))
                .collect();
            return Some(json_response(
                200,
                serde_json::to_vec(&json!({"models": models})).unwrap_or_default(),
            ));
        }
        None
    }

    /// Ollama's `/api/pull`, `/api/generate` (load), `/api/delete`.
    fn ollama_call(&self, parts: &http::request::Parts, body: &Bytes) -> Response<Body> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let model = v
            .get("model")
            .or_else(|| v.get("name"))
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        let has = |list: &Vec<String>| {
            list.iter()
                .any(|m| *m == model || m.strip_suffix(":latest") == Some(model.as_str()))
        };
        match (parts.method.clone(), parts.uri.path()) {
            (Method::POST, "/api/pull") => {
                if model.starts_with("missing") {
                    let lines = vec![
                        json!({"status": "pulling manifest"}),
                        json!({"error": "pull model manifest: file does not exist"}),
                    ];
                    return ndjson(lines, 0);
                }
                if !has(&self.ollama.lock()) {
                    self.ollama.lock().push(model.clone());
                }
                let total = 4_000_000u64;
                let mut lines = vec![json!({"status": "pulling manifest"})];
                for done in [1_000_000u64, 2_500_000, 4_000_000] {
                    lines.push(json!({"status": "pulling sha256:abc", "digest": "sha256:abc", "total": total, "completed": done}));
                }
                lines.push(json!({"status": "verifying sha256 digest"}));
                lines.push(json!({"status": "writing manifest"}));
                lines.push(json!({"status": "success"}));
                ndjson(lines, self.args.itl_ms)
            }
            (Method::POST, "/api/generate") => {
                if !has(&self.ollama.lock()) {
                    return json_response(
                        404,
                        serde_json::to_vec(&json!({"error": format!("model '{model}' not found")}))
                            .unwrap_or_default(),
                    );
                }
                let mut loaded = self.loaded.lock();
                if !has(&loaded) {
                    loaded.push(model.clone());
                }
                json_response(
                    200,
                    serde_json::to_vec(&json!({"model": model, "response": "", "done": true, "done_reason": "load"})).unwrap_or_default(),
                )
            }
            (Method::DELETE, "/api/delete") => {
                let mut list = self.ollama.lock();
                let before = list.len();
                list.retain(|m| *m != model && m.strip_suffix(":latest") != Some(model.as_str()));
                self.loaded.lock().retain(|m| *m != model);
                if list.len() == before {
                    json_response(
                        404,
                        serde_json::to_vec(&json!({"error": format!("model '{model}' not found")}))
                            .unwrap_or_default(),
                    )
                } else {
                    json_response(200, Vec::new())
                }
            }
            _ => self.not_found(),
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let anthropic_only = self.args.dialect == Dialect::Anthropic;
        if let Some(r) = self.lifecycle(&parts).await {
            return Ok(r);
        }
        if self.args.mode == Mode::Ollama
            && path.starts_with("/api/")
            && parts.method != Method::GET
        {
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Ok(self.ollama_call(&parts, &body));
        }
        match (&parts.method, path.as_str()) {
            (&Method::GET, "/v1/models") if anthropic_only => {
                return Ok(json_response(200, anth::model_list(&self.models())));
            }
            (&Method::GET, "/v1/models") => {
                let models = self.models();
                let list =
                    mockgen::model_list(models.iter().map(|m| (m.as_str(), "vllm")), now_secs());
                return Ok(json_response(200, list));
            }
            (&Method::GET, "/api/tags") if anthropic_only => return Ok(self.not_found()),
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
        let route = match (&parts.method, path.as_str()) {
            (&Method::POST, "/v1/chat/completions") => Route::OpenAi(Some(StreamKind::Chat)),
            (&Method::POST, "/v1/completions") => Route::OpenAi(Some(StreamKind::Text)),
            (&Method::POST, "/v1/embeddings") => Route::OpenAi(None),
            (&Method::POST, "/v1/messages") => Route::Messages,
            (&Method::POST, "/v1/messages/count_tokens") => Route::CountTokens,
            _ => return Ok(self.not_found()),
        };
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(json_response(400, b"{}".to_vec())),
        };
        self.record(&parts, &body);
        Ok(match route {
            Route::OpenAi(_) if anthropic_only => self.not_found(),
            Route::Messages | Route::CountTokens if self.args.dialect == Dialect::Openai => {
                openai_not_found()
            }
            Route::OpenAi(kind) => self.openai(parts, body, kind).await,
            Route::Messages => self.messages(parts, body, false).await,
            Route::CountTokens => self.messages(parts, body, true).await,
        })
    }

    /// The OpenAI routes; `kind` is `None` for embeddings.
    async fn openai(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        kind: Option<StreamKind>,
    ) -> Response<Body> {
        if let Some(key) = &self.args.require_api_key {
            let sent = header_str(&parts, "authorization").and_then(|a| a.strip_prefix("Bearer "));
            if sent != Some(key.as_str()) {
                let e = switchyard_filters::error::error_json(
                    "Incorrect API key provided",
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                );
                return json_response(401, e);
            }
        }
        if let Some(ms) = header_u64(&parts, "x-mock-delay-ms") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(code) = self.fault_status(&parts) {
            let e = switchyard_filters::error::error_json(
                &format!("mock-llm injected status {code}"),
                "server_error",
                None,
                Some("mock_fault"),
            );
            let mut r = json_response(code, e);
            if let Some(v) = self.retry_after(&parts) {
                r.headers_mut().insert("retry-after", v);
            }
            return r;
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
                return json_response(400, e);
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
            return json_response(404, e);
        }
        let prompt = mockgen::estimate_prompt_tokens(body.len());
        let drop_after = header_u64(&parts, "x-mock-drop-after").or(self.args.drop_after);
        let Some(kind) = kind else {
            let n = mockgen::embedding_inputs(&body);
            let seed = body
                .iter()
                .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)));
            let doc = mockgen::embeddings(&model, n, self.args.embedding_dim, seed, prompt);
            return maybe_truncated(doc, drop_after);
        };

        let n = header_u64(&parts, "x-mock-tokens").map_or(self.args.tokens, |n| n as usize);
        let (ttft, itl) = timing(&parts, &self.args);
        let seq = self.next_seq();
        let id = format!(
            "{}-{}",
            if kind == StreamKind::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            },
            seq
        );
        // Reasoning and tool calls are chat-only extras, off unless a header asks.
        let chat = kind == StreamKind::Chat;
        let reasoning = if chat {
            header_u64(&parts, "x-mock-reasoning").unwrap_or(0) as usize
        } else {
            0
        };
        let calls: Vec<(String, String, String)> = if chat {
            let wanted = header_u64(&parts, "x-mock-tool-calls").unwrap_or(0) as usize;
            mockgen::mock_tool_calls(&mockgen::offered_tools(&v), wanted)
                .into_iter()
                .enumerate()
                .map(|(i, c)| (format!("call_mock{seq}x{i}"), c.name, c.arguments))
                .collect()
        } else {
            Vec::new()
        };
        let interleave = header_u64(&parts, "x-mock-interleave") == Some(1);
        let finish_reason = if calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        let created = now_secs();
        let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
        let include_usage = v
            .pointer("/stream_options/include_usage")
            .and_then(|u| u.as_bool())
            .unwrap_or(false);
        let builder = StreamBuilder {
            id: &id,
            model: &model,
            created,
            kind,
            include_usage,
        };
        let tools = builder.tool_call_chunks(&calls, interleave);
        let completion = (n + reasoning + tools.len().saturating_sub(calls.len())) as u64;
        if !stream {
            wait_for_tokens(ttft, itl, n + reasoning + tools.len()).await;
            let text = mockgen::canned_tokens(n).concat();
            let doc = match kind {
                StreamKind::Chat if reasoning > 0 || !calls.is_empty() => {
                    let thought: String = (0..reasoning)
                        .map(|i| mockgen::canned_thought(i, reasoning))
                        .collect();
                    let message = mockgen::ChatMessage {
                        content: (n > 0 || calls.is_empty()).then_some(text.as_str()),
                        reasoning: (reasoning > 0).then_some(thought.as_str()),
                        tool_calls: calls,
                    };
                    mockgen::chat_completion_with(
                        &id,
                        &model,
                        created,
                        &message,
                        finish_reason,
                        prompt,
                        completion,
                    )
                }
                StreamKind::Chat => {
                    mockgen::chat_completion(&id, &model, created, &text, prompt, n as u64)
                }
                StreamKind::Text => {
                    mockgen::text_completion(&id, &model, created, &text, prompt, n as u64)
                }
            };
            return maybe_truncated(doc, drop_after);
        }

        // Events are made one at a time as the stream is polled, so long streams
        // (thousands of tokens) cost nothing up front.
        let gen = mockgen::ChatStream {
            id,
            model,
            created,
            kind,
            include_usage,
            tokens: n,
            reasoning,
            tools,
            finish_reason,
            prompt,
            completion,
        };
        let limit = drop_after.map_or(usize::MAX, |d| d as usize);
        let s = stream::unfold((gen, 0usize), move |(gen, sent)| async move {
            if sent >= limit {
                if sent == limit {
                    return Some((Err(injected_drop()), (gen, usize::MAX)));
                }
                return None;
            }
            let chunk = gen.event(sent)?;
            let delay = match chunk.token {
                Some(0) => ttft,
                Some(_) => itl,
                None => Duration::ZERO,
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((Ok(Frame::data(Bytes::from(chunk.bytes))), (gen, sent + 1)))
        });
        sse_response(BodyExt::boxed(StreamBody::new(s)), "text/event-stream")
    }

    /// Anthropic `/v1/messages` (and `count_tokens`).
    async fn messages(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        count_tokens: bool,
    ) -> Response<Body> {
        if let Some(key) = &self.args.require_api_key {
            if header_str(&parts, "x-api-key") != Some(key.as_str()) {
                return self.anthropic_error(401, "authentication_error", "invalid x-api-key");
            }
        }
        if let Some(ms) = header_u64(&parts, "x-mock-delay-ms") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(code) = self.fault_status(&parts) {
            let msg = match code {
                529 => "Overloaded".to_string(),
                _ => format!("mock-llm injected status {code}"),
            };
            let mut r = self.anthropic_error(code, anth::error_type(code), &msg);
            if let Some(v) = self.retry_after(&parts) {
                r.headers_mut().insert("retry-after", v);
            }
            return r;
        }
        let v: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                let msg = format!("There was an error parsing the body of your request: {e}");
                return self.anthropic_error(400, "invalid_request_error", &msg);
            }
        };
        if let Err(msg) = anth::validate_request(&v, count_tokens) {
            return self.anthropic_error(400, "invalid_request_error", &msg);
        }
        let model = v
            .get("model")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        if !self.models().contains(&model) {
            return self.anthropic_error(404, "not_found_error", &format!("model: {model}"));
        }
        let prompt = mockgen::estimate_prompt_tokens(body.len());
        let drop_after = header_u64(&parts, "x-mock-drop-after").or(self.args.drop_after);
        let seq = self.next_seq();
        let rid = format!("req_mock{seq:012}");
        if count_tokens {
            return with_request_id(
                truncated(anth::count_tokens(prompt), drop_after, true),
                &rid,
            );
        }

        let answer = self.plan_answer(&parts, &v, model, prompt, seq);
        let (ttft, itl) = timing(&parts, &self.args);
        let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
        if !stream {
            wait_for_tokens(ttft, itl, answer.deltas()).await;
            let doc = serde_json::to_vec(&answer.message()).unwrap_or_default();
            return with_request_id(truncated(doc, drop_after, true), &rid);
        }
        let full_usage = header_str(&parts, "x-mock-delta-usage") == Some("full");
        let state = AnthropicStream {
            events: answer.events(full_usage),
            sent: 0,
            deltas: 0,
            drop_after: drop_after.map_or(usize::MAX, |d| d as usize),
            error_after: header_u64(&parts, "x-mock-error-after").map(|n| n as usize),
            ttft,
            itl,
            done: false,
        };
        let s = stream::unfold(state, |mut st| async move {
            let frame = st.next_frame().await?;
            Some((frame, st))
        });
        let r = sse_response(
            BodyExt::boxed(StreamBody::new(s)),
            "text/event-stream; charset=utf-8",
        );
        with_request_id(r, &rid)
    }

    /// The content of an Anthropic answer, from the request and the mock headers.
    fn plan_answer(
        &self,
        parts: &http::request::Parts,
        request: &serde_json::Value,
        model: String,
        prompt: u64,
        seq: u64,
    ) -> Answer {
        let wanted = header_u64(parts, "x-mock-tool-calls").unwrap_or(0) as usize;
        let plan = anth::Plan {
            tokens: header_u64(parts, "x-mock-tokens").map_or(self.args.tokens, |n| n as usize),
            max_tokens: request
                .get("max_tokens")
                .and_then(|m| m.as_u64())
                .unwrap_or(u64::MAX),
            thinking: header_u64(parts, "x-mock-thinking").unwrap_or(0) as usize,
            tool_calls: mockgen::mock_tool_calls(&mockgen::offered_tools(request), wanted),
            stop_reason: header_str(parts, "x-mock-stop-reason").map(str::to_string),
            usage: anth::Usage {
                input: prompt,
                output: 0,
                cache_creation: header_u64(parts, "x-mock-cache-creation").unwrap_or(0),
                cache_read: header_u64(parts, "x-mock-cache-read").unwrap_or(0),
            },
        };
        Answer::from_plan(plan, model, seq)
    }
}

fn with_request_id(mut r: Response<Body>, rid: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut().insert("request-id", v);
    }
    r
}

/// A JSON response, cut in half with the connection dropped when asked.
fn maybe_truncated(doc: Vec<u8>, drop_after: Option<u64>) -> Response<Body> {
    truncated(doc, drop_after, false)
}

/// As [`maybe_truncated`]; with `flush`, the half body is given time to reach the client
/// before the drop (hyper discards unflushed bytes, the response head included, when a
/// body fails at once).
fn truncated(doc: Vec<u8>, drop_after: Option<u64>, flush: bool) -> Response<Body> {
    if drop_after.is_none() {
        return json_response(200, doc);
    }
    let len = doc.len();
    let half = Bytes::from(doc).slice(..len / 2);
    let drop = stream::once(async move {
        if flush {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(injected_drop())
    });
    let frames = stream::iter([Ok(Frame::data(half))]).chain(drop);
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert("content-length", HeaderValue::from(len));
    r
}

/// A streamed Anthropic answer with its faults: a dropped connection after
/// `drop_after` frames, an `error` event in place of delta number `error_after`.
struct AnthropicStream {
    events: MessageEvents,
    sent: usize,
    deltas: usize,
    drop_after: usize,
    error_after: Option<usize>,
    ttft: Duration,
    itl: Duration,
    done: bool,
}

impl AnthropicStream {
    async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, std::io::Error>> {
        if self.done {
            return None;
        }
        if self.sent == self.drop_after {
            self.done = true;
            // hyper discards what it has not flushed when a body fails; a pause lets the
            // frames before the drop reach the client, even without token delays.
            if self.sent > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            return Some(Err(injected_drop()));
        }
        let event = self.events.next()?;
        let value = if event.is_delta && self.error_after == Some(self.deltas) {
            self.done = true;
            anth::error_event("overloaded_error", "Overloaded")
        } else {
            if event.is_delta {
                let delay = if self.deltas == 0 {
                    self.ttft
                } else {
                    self.itl
                };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                self.deltas += 1;
            }
            event.value
        };
        self.sent += 1;
        Some(Ok(Frame::data(Bytes::from(anth::frame(&value)))))
    }
}

/// A streamed NDJSON body, one line every `gap_ms`.
fn ndjson(lines: Vec<serde_json::Value>, gap_ms: u64) -> Response<Body> {
    let s = stream::iter(lines.into_iter().enumerate()).then(move |(i, v)| async move {
        if i > 0 && gap_ms > 0 {
            tokio::time::sleep(Duration::from_millis(gap_ms)).await;
        }
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        Ok::<_, std::io::Error>(Frame::data(Bytes::from(b)))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(s)));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
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
    if let Some(ms) = args.exit_after_ms {
        // A crashing backend: the whole process goes, as a container's main process would.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            println!("mock-llm exiting after {ms} ms (--exit-after-ms)");
            std::process::exit(1);
        });
    }
    // As a container's PID 1 no default handler ends it: `docker stop` would wait out
    // its whole grace period.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            println!("mock-llm stopping on SIGTERM");
            std::process::exit(0);
        }
    });
    let ollama = if args.models.is_empty() {
        Vec::new()
    } else {
        args.models.clone()
    };
    let mock = Arc::new(Mock {
        started: std::time::Instant::now(),
        ollama: Mutex::new(ollama),
        loaded: Mutex::new(Vec::new()),
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
