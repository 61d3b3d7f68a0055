//! Micro-benchmarks of the per-request pure functions, each against the naive way.
//!
//!   cargo bench --bench hot_paths
//!
//! - head parse: `RequestHead::parse` (borrowed, skips unknown fields) vs a full
//!   `serde_json::Value` parse
//! - routing: `RouteTable::decide` for local, cloud, alias and unknown models
//! - rewrite: splicing the model name vs re-serialising the whole body
//! - usage: `usage_from_tail` (what the proxy uses) and the incremental `UsageScanner`
//!   vs parsing the whole JSON
//! - transcode: the dialect stream transcoders per upstream chunk (one content delta
//!   in, the client's event out), against copying the chunk (what a passthrough does)
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use switchyard_filters::glob::Pattern;
use switchyard_filters::head::RequestHead;
use switchyard_filters::rewrite::{rewrite_body, Rewrite};
use switchyard_filters::route::{Class, Hint, RouteProvider, RouteTable, Strategy};
use switchyard_filters::usage::{usage_from_tail, UsageScanner};

const SMALL: &[u8] = br#"{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one short sentence please."}],"max_tokens":16}"#;

fn big_body() -> Vec<u8> {
    let msgs: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"role":"user","content":"message number {i} with some text in it, as a long chat history would have, and a few more words to make it realistic"}}"#))
        .collect();
    format!(r#"{{"model":"bench-model","temperature":0.7,"stream":true,"messages":[{}],"max_tokens":512,"metadata":{{"a":"b"}}}}"#, msgs.join(",")).into_bytes()
}

const RESPONSE: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today? This is a fixed benchmark answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":16,"total_tokens":28}}"#;

fn table() -> RouteTable {
    let p = |name: &str, class, pats: &[&str]| RouteProvider {
        name: name.into(),
        class,
        patterns: pats.iter().map(|s| Pattern::new(s)).collect(),
    };
    RouteTable {
        providers: vec![
            p("local", Class::Local, &[]),
            p(
                "openai",
                Class::Cloud,
                &["gpt-4o", "gpt-4o-mini", "gpt-4*", "o1*", "o3*"],
            ),
            p("groq", Class::Cloud, &["llama-*", "gemma*"]),
            p("anthropic", Class::Cloud, &["claude-*"]),
        ],
        aliases: [("fast".to_string(), "groq/llama-3.1-8b-instant".to_string())]
            .into_iter()
            .collect(),
        local_models: [
            "bench-model".to_string(),
            "Qwen/Qwen2.5-7B-Instruct".to_string(),
        ]
        .into_iter()
        .collect(),
        local: Some(0),
        strategy: Strategy::LocalFirst,
    }
}

fn head_parse(c: &mut Criterion) {
    let big = big_body();
    let mut g = c.benchmark_group("head_parse");
    g.bench_function("switchyard/small", |b| {
        b.iter(|| RequestHead::parse(black_box(SMALL)).map(|h| h.is_stream()))
    });
    g.bench_function("naive_value/small", |b| {
        b.iter(|| {
            serde_json::from_slice::<serde_json::Value>(black_box(SMALL))
                .map(|v| v["stream"].as_bool())
        })
    });
    g.bench_function("switchyard/6KiB", |b| {
        b.iter(|| RequestHead::parse(black_box(&big)).map(|h| h.is_stream()))
    });
    g.bench_function("naive_value/6KiB", |b| {
        b.iter(|| {
            serde_json::from_slice::<serde_json::Value>(black_box(&big))
                .map(|v| v["stream"].as_bool())
        })
    });
    g.finish();
}

fn routing(c: &mut Criterion) {
    let t = table();
    let mut g = c.benchmark_group("route_decide");
    for model in [
        "bench-model",
        "gpt-4o-mini",
        "claude-3-5-sonnet",
        "fast",
        "unknown-model",
    ] {
        g.bench_function(model, |b| {
            b.iter(|| {
                t.decide(black_box(model), Hint::None, |_| None)
                    .map(|r| r.candidates.len())
            })
        });
    }
    g.finish();
}

fn rewrite(c: &mut Criterion) {
    let big = big_body();
    let mut g = c.benchmark_group("rewrite_model");
    g.bench_function("splice/6KiB", |b| {
        b.iter(|| {
            rewrite_body(
                black_box(&big),
                Rewrite {
                    model: Some("other-model"),
                    include_usage: true,
                    drop: &[],
                },
            )
        })
    });
    g.bench_function("reserialize/6KiB", |b| {
        b.iter(|| {
            let mut v: serde_json::Value =
                serde_json::from_slice(black_box(&big)).unwrap_or_default();
            v["model"] = "other-model".into();
            v["stream_options"] = serde_json::json!({"include_usage": true});
            serde_json::to_vec(&v).unwrap_or_default()
        })
    });
    g.finish();
}

fn usage(c: &mut Criterion) {
    let mut g = c.benchmark_group("usage");
    g.bench_function("from_tail", |b| {
        b.iter(|| usage_from_tail(black_box(RESPONSE)))
    });
    g.bench_function("scanner", |b| {
        b.iter(|| {
            let mut s = UsageScanner::new();
            s.feed(black_box(RESPONSE));
            s.usage()
        })
    });
    g.bench_function("naive_value", |b| {
        b.iter(|| {
            serde_json::from_slice::<serde_json::Value>(black_box(RESPONSE))
                .ok()
                .and_then(|v| v["usage"]["completion_tokens"].as_u64())
        })
    });
    g.finish();
}

/// One OpenAI stream chunk carrying a content delta.
const OPENAI_CHUNK: &[u8] = b"data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token\"},\"finish_reason\":null}]}\n\n";
/// One Anthropic stream event carrying a text delta.
const ANTHROPIC_CHUNK: &[u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" token\"}}\n\n";

// The requests are constants that translate; a failure is a broken benchmark.
#[allow(clippy::unwrap_used)]
fn transcode(c: &mut Criterion) {
    use switchyard_filters::dialect::{
        anthropic_request_to_openai, openai_request_to_anthropic, AnthropicSseToOpenAi,
        AnthropicToOpenAi, OpenAiSseToAnthropic, OpenAiToAnthropic,
    };
    let mut g = c.benchmark_group("transcode_chunk");
    // An Anthropic client in front of an OpenAI upstream: OpenAI chunks in.
    let a_req = br#"{"model":"m","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (_, a_state) =
        anthropic_request_to_openai(a_req, "m", &AnthropicToOpenAi::default()).unwrap();
    let mut a2o = OpenAiSseToAnthropic::new(&a_state);
    let mut out = Vec::with_capacity(4096);
    // Past the first chunk (message_start, block start) to the steady state.
    a2o.feed(OPENAI_CHUNK, &mut out);
    g.bench_function("openai_chunk_to_anthropic", |b| {
        b.iter(|| {
            out.clear();
            a2o.feed(black_box(OPENAI_CHUNK), &mut out);
            out.len()
        })
    });
    // An OpenAI client in front of an Anthropic upstream: Anthropic events in.
    let o_req = br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (_, o_state) =
        openai_request_to_anthropic(o_req, "m", &OpenAiToAnthropic::default()).unwrap();
    let mut o2a = AnthropicSseToOpenAi::new(&o_state);
    let start = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_b\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    o2a.feed(start, &mut out);
    g.bench_function("anthropic_event_to_openai", |b| {
        b.iter(|| {
            out.clear();
            o2a.feed(black_box(ANTHROPIC_CHUNK), &mut out);
            out.len()
        })
    });
    g.bench_function("passthrough_copy", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(OPENAI_CHUNK));
            out.len()
        })
    });
    g.finish();
}

fn cache_key(c: &mut Criterion) {
    use switchyard_filters::cachekey::{key, key_reference};
    use switchyard_filters::endpoint::Endpoint;
    let big = big_body();
    let mut g = c.benchmark_group("cache_key");
    g.bench_function("borrowed/small", |b| {
        b.iter(|| key(Endpoint::Chat, "m", black_box(SMALL)))
    });
    g.bench_function("value_tree/small", |b| {
        b.iter(|| key_reference(Endpoint::Chat, "m", black_box(SMALL)))
    });
    g.bench_function("borrowed/6KiB", |b| {
        b.iter(|| key(Endpoint::Chat, "m", black_box(&big)))
    });
    g.bench_function("value_tree/6KiB", |b| {
        b.iter(|| key_reference(Endpoint::Chat, "m", black_box(&big)))
    });
    g.finish();
}

criterion_group!(benches, head_parse, routing, rewrite, usage, transcode, cache_key);
criterion_main!(benches);
