//! Property tests of the dialect stream transcoders: output never depends on how the
//! upstream bytes are split (one byte at a time included), SSE noise changes nothing, and
//! the OpenAI → Anthropic transcoder keeps Anthropic's block invariants under any
//! interleaving of reasoning, text and tool-call fragments, giving each `tool_use` block
//! exactly the JSON its fragments spelled. Case counts are kept small so the whole
//! filters test run stays quick in debug builds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use switchyard_filters::dialect::{
    anthropic_request_to_openai, openai_request_to_anthropic, A2OState, AnthropicSseToOpenAi,
    AnthropicToOpenAi, Backend, O2AState, OpenAiSseToAnthropic, OpenAiToAnthropic, StreamEnd,
};

/// 96 cases per property (`PROPTEST_CASES` overrides, for longer local runs).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(96);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Tool arguments: objects whose strings hold braces, quotes, escapes and non-ASCII text
/// (to trip a naive end-of-JSON detector).
fn json_object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "[a-z{}\\[\\]\"\\\\: é😀\n]{0,8}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z}\"]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    });
    prop::collection::btree_map("[a-z_]{1,6}", value, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>()))
}

/// `s` cut at the given fractions (char boundaries), first piece possibly empty.
fn cut(s: &str, cuts: &[prop::sample::Index]) -> Vec<String> {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let mut at: Vec<usize> = cuts.iter().map(|c| bounds[c.index(bounds.len())]).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for a in at {
        out.push(s[from..a].to_string());
        from = a;
    }
    out.push(s[from..].to_string());
    out
}

/// Feeds `body` whole, in the pieces `splits` describes, and one byte at a time; all three
/// must write the same bytes and end the same way.
fn split_invariant<T>(
    body: &[u8],
    splits: &[usize],
    make: impl Fn() -> T,
    feed: impl Fn(&mut T, &[u8], &mut Vec<u8>),
    finish: impl Fn(&mut T, &mut Vec<u8>) -> StreamEnd,
) -> Result<(Vec<u8>, StreamEnd), TestCaseError> {
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut t = make();
        let mut out = Vec::new();
        for p in pieces {
            feed(&mut t, p, &mut out);
        }
        let end = finish(&mut t, &mut out);
        (out, end)
    };
    let whole = run(&mut std::iter::once(body));
    let bytewise = run(&mut body.chunks(1));
    let mut rest = body;
    let mut pieces: Vec<&[u8]> = Vec::new();
    for s in splits {
        let n = (*s).min(rest.len());
        pieces.push(&rest[..n]);
        rest = &rest[n..];
    }
    pieces.push(rest);
    let random = run(&mut pieces.into_iter());
    prop_assert_eq!(&whole, &bytewise, "one byte at a time");
    prop_assert_eq!(&whole, &random, "random split");
    Ok(whole)
}

// ---------------------------------------------------------------- OpenAI → Anthropic

#[derive(Debug, Clone)]
enum Frag {
    Reason(String),
    Content(String),
    /// Tool `k`'s fragment; the first one carries id and name.
    Tool(usize, bool, String),
}

#[derive(Debug, Clone)]
struct Interleaving {
    reasoning: Vec<String>,
    content: Vec<String>,
    /// Per tool: the arguments text and its fragments.
    tools: Vec<(String, Vec<String>)>,
    frags: Vec<Frag>,
    /// Group consecutive fragments of different tools into one chunk.
    pack: bool,
    finish_with_content: bool,
    usage_choices_null: bool,
    done: bool,
}

fn interleaving() -> impl Strategy<Value = Interleaving> {
    (
        prop::collection::vec("[a-z .]{1,5}", 0..4),
        prop::collection::vec("[a-zé .\n]{1,5}", 0..4),
        prop::collection::vec(
            (
                json_object(),
                any::<bool>(),
                prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            ),
            0..4,
        ),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<(bool, bool, bool, bool)>(),
    )
        .prop_map(
            |(reasoning, content, tools, order, (pack, fwc, null, done))| {
                let tools: Vec<(String, Vec<String>)> = tools
                    .into_iter()
                    .map(|(v, pretty, cuts)| {
                        let s = if pretty {
                            serde_json::to_string_pretty(&v).unwrap()
                        } else {
                            v.to_string()
                        };
                        let pieces = cut(&s, &cuts);
                        (s, pieces)
                    })
                    .collect();
                let mut lanes: Vec<Vec<Frag>> = vec![
                    reasoning.iter().cloned().map(Frag::Reason).collect(),
                    content.iter().cloned().map(Frag::Content).collect(),
                ];
                for (k, (_, pieces)) in tools.iter().enumerate() {
                    lanes.push(
                        pieces
                            .iter()
                            .enumerate()
                            .map(|(j, p)| Frag::Tool(k, j == 0, p.clone()))
                            .collect(),
                    );
                }
                for l in &mut lanes {
                    l.reverse();
                }
                let mut frags = Vec::new();
                let mut o = order.into_iter().cycle();
                loop {
                    let live: Vec<usize> =
                        (0..lanes.len()).filter(|&i| !lanes[i].is_empty()).collect();
                    if live.is_empty() {
                        break;
                    }
                    let pick = live[o.next().unwrap_or(0) as usize % live.len()];
                    frags.push(lanes[pick].pop().unwrap());
                }
                Interleaving {
                    reasoning,
                    content,
                    tools,
                    frags,
                    pack,
                    finish_with_content: fwc,
                    usage_choices_null: null,
                    done,
                }
            },
        )
}

fn frag_delta(f: &Frag) -> Value {
    match f {
        Frag::Reason(s) => json!({"reasoning_content": s}),
        Frag::Content(s) => json!({"content": s}),
        Frag::Tool(..) => json!({"tool_calls": [tool_call(f)]}),
    }
}

fn tool_call(f: &Frag) -> Value {
    let Frag::Tool(k, first, s) = f else {
        unreachable!()
    };
    if *first {
        json!({"index": k, "id": format!("call_{k}"), "type": "function",
               "function": {"name": format!("tool_{k}"), "arguments": s}})
    } else {
        json!({"index": k, "function": {"arguments": s}})
    }
}

fn openai_body(il: &Interleaving) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let mut i = 0;
    while i < il.frags.len() {
        let f = &il.frags[i];
        if let (true, Frag::Tool(..)) = (il.pack, f) {
            let mut calls = vec![tool_call(f)];
            let mut seen = vec![match f {
                Frag::Tool(k, ..) => *k,
                _ => unreachable!(),
            }];
            while let Some(g @ Frag::Tool(k, ..)) = il.frags.get(i + 1) {
                if seen.contains(k) {
                    break;
                }
                seen.push(*k);
                calls.push(tool_call(g));
                i += 1;
            }
            chunks.push(chunk(json!({"tool_calls": calls}), Value::Null));
        } else {
            chunks.push(chunk(frag_delta(f), Value::Null));
        }
        i += 1;
    }
    let finish = if il.tools.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    match (il.finish_with_content, chunks.len() > 1) {
        (true, true) => {
            let last = chunks.last_mut().unwrap();
            last["choices"][0]["finish_reason"] = json!(finish);
        }
        _ => chunks.push(chunk(json!({}), json!(finish))),
    }
    let mut usage = json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}});
    if il.usage_choices_null {
        usage["choices"] = Value::Null;
    }
    chunks.push(usage);
    let mut s: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    if il.done {
        s.push_str("data: [DONE]\n\n");
    }
    s
}

fn a2o_state() -> A2OState {
    let opts = AnthropicToOpenAi {
        backend: Backend::Vllm,
        message_id: "msg_p".into(),
        thinking_signature: "sig".into(),
        ..AnthropicToOpenAi::default()
    };
    let req = br#"{"model":"c","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"q"}]}"#;
    anthropic_request_to_openai(req, "m", &opts).unwrap().1
}

#[derive(Debug, Default)]
struct Block {
    kind: String,
    text: String,
    id: String,
    name: String,
}

/// Parses an Anthropic stream and checks its invariants; returns the blocks and the
/// `message_delta`.
fn anthropic_blocks(out: &[u8]) -> Result<(Vec<Block>, Value), TestCaseError> {
    let s = std::str::from_utf8(out).unwrap();
    let evs: Vec<Value> = s
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (ev, data) = f.split_once('\n').unwrap();
            let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(
                ev.strip_prefix("event: ").unwrap(),
                v["type"].as_str().unwrap()
            );
            v
        })
        .collect();
    prop_assert_eq!(&evs[0]["type"], "message_start");
    let mut blocks: Vec<Block> = Vec::new();
    let mut open: Option<u64> = None;
    let mut signed = false;
    let mut delta = Value::Null;
    let n = evs.len();
    prop_assert_eq!(&evs[n - 1]["type"], "message_stop");
    for (i, e) in evs.iter().enumerate().skip(1) {
        match e["type"].as_str().unwrap() {
            "content_block_start" => {
                prop_assert!(open.is_none());
                let idx = e["index"].as_u64().unwrap();
                prop_assert_eq!(idx as usize, blocks.len());
                let cb = &e["content_block"];
                blocks.push(Block {
                    kind: cb["type"].as_str().unwrap().into(),
                    id: cb["id"].as_str().unwrap_or("").into(),
                    name: cb["name"].as_str().unwrap_or("").into(),
                    ..Block::default()
                });
                open = Some(idx);
                signed = false;
            }
            "content_block_delta" => {
                let idx = e["index"].as_u64().unwrap();
                prop_assert_eq!(open, Some(idx));
                let b = &mut blocks[idx as usize];
                let d = &e["delta"];
                match (b.kind.as_str(), d["type"].as_str().unwrap()) {
                    ("text", "text_delta") => b.text.push_str(d["text"].as_str().unwrap()),
                    ("thinking", "thinking_delta") => {
                        prop_assert!(!signed);
                        b.text.push_str(d["thinking"].as_str().unwrap())
                    }
                    ("thinking", "signature_delta") => signed = true,
                    ("tool_use", "input_json_delta") => {
                        b.text.push_str(d["partial_json"].as_str().unwrap())
                    }
                    other => prop_assert!(false, "delta of the wrong type {:?}", other),
                }
            }
            "content_block_stop" => {
                let idx = e["index"].as_u64().unwrap();
                prop_assert_eq!(open, Some(idx));
                if blocks[idx as usize].kind == "thinking" {
                    prop_assert!(signed);
                }
                open = None;
            }
            "message_delta" => {
                prop_assert_eq!(i, n - 2);
                prop_assert!(open.is_none());
                delta = e.clone();
            }
            "message_stop" => prop_assert_eq!(i, n - 1),
            other => prop_assert!(false, "unexpected event {}", other),
        }
    }
    Ok((blocks, delta))
}

// ---------------------------------------------------------------- Anthropic → OpenAI

#[derive(Debug, Clone)]
enum Spec {
    Text(Vec<String>),
    Thinking(Vec<String>),
    /// Arguments text (maybe empty: a no-argument tool) and its fragments.
    Tool(String, Vec<String>),
}

#[derive(Debug, Clone, Copy)]
enum Ending {
    Complete,
    Error,
    /// Cut the body at this fraction (per mille) of its length.
    Truncate(u16),
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    let spec = prop_oneof![
        prop::collection::vec("[a-zé \n]{0,5}", 0..4).prop_map(Spec::Text),
        prop::collection::vec("[a-z ]{1,5}", 0..3).prop_map(Spec::Thinking),
        (
            prop::option::of(json_object()),
            prop::collection::vec(any::<prop::sample::Index>(), 0..5)
        )
            .prop_map(|(v, cuts)| {
                let s = v.map(|v| v.to_string()).unwrap_or_default();
                let pieces = if s.is_empty() {
                    Vec::new()
                } else {
                    cut(&s, &cuts)
                };
                Spec::Tool(s, pieces)
            }),
    ];
    prop::collection::vec(spec, 0..5)
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        6 => Just(Ending::Complete),
        1 => Just(Ending::Error),
        1 => (0u16..1000).prop_map(Ending::Truncate),
    ]
}

fn anthropic_events(specs: &[Spec], ending: Ending) -> Vec<Value> {
    let mut ev = vec![
        json!({"type": "message_start", "message": {"id": "msg_a", "type": "message",
        "role": "assistant", "content": [], "model": "claude-p", "stop_reason": null,
        "usage": {"input_tokens": 11, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
    ];
    let mut tools = false;
    for (i, s) in specs.iter().enumerate() {
        let (block, deltas): (Value, Vec<Value>) = match s {
            Spec::Text(parts) => (
                json!({"type": "text", "text": ""}),
                parts
                    .iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            Spec::Thinking(parts) => {
                let mut d: Vec<Value> = parts
                    .iter()
                    .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                    .collect();
                d.push(json!({"type": "signature_delta", "signature": "s"}));
                (json!({"type": "thinking", "thinking": ""}), d)
            }
            Spec::Tool(_, parts) => {
                tools = true;
                (
                    json!({"type": "tool_use", "id": format!("toolu_{i}"), "name": format!("t{i}"), "input": {}}),
                    parts
                        .iter()
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                        .collect(),
                )
            }
        };
        ev.push(json!({"type": "content_block_start", "index": i, "content_block": block}));
        for d in deltas {
            ev.push(json!({"type": "content_block_delta", "index": i, "delta": d}));
        }
        ev.push(json!({"type": "content_block_stop", "index": i}));
    }
    if let Ending::Error = ending {
        let at = ev.len() / 2 + 1;
        ev.insert(at, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
    }
    let stop = if tools { "tool_use" } else { "end_turn" };
    ev.push(json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 7}}));
    ev.push(json!({"type": "message_stop"}));
    ev
}

/// The SSE body of `events`; with `noise`, CRLF line ends, a BOM, comments, pings and an
/// unknown event between every two events.
fn anthropic_body(events: &[Value], noise: bool) -> String {
    let nl = if noise { "\r\n" } else { "\n" };
    let mut s = String::new();
    if noise {
        s.push_str("\u{feff}: hi\r\n\r\n");
    }
    for e in events {
        s.push_str(&format!(
            "event: {}{nl}data: {e}{nl}{nl}",
            e["type"].as_str().unwrap()
        ));
        if noise {
            s.push_str(": keep-alive\r\n\r\nevent: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n");
            s.push_str("event: future\r\ndata: {\"type\":\"future\"}\r\n\r\n");
        }
    }
    s
}

fn o2a_state() -> O2AState {
    let req = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"q"}]}"#;
    openai_request_to_anthropic(req, "claude-p", &OpenAiToAnthropic::default())
        .unwrap()
        .1
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn openai_to_anthropic_split_invariance_and_block_invariants(
        il in interleaving(),
        splits in prop::collection::vec(0usize..64, 0..24),
    ) {
        let body = openai_body(&il);
        let st = a2o_state();
        let (out, end) = split_invariant(
            body.as_bytes(),
            &splits,
            || OpenAiSseToAnthropic::new(&st),
            |t, b, o| t.feed(b, o),
            |t, o| t.finish(o),
        )?;
        prop_assert_eq!(end, StreamEnd::Complete);
        let (blocks, delta) = anthropic_blocks(&out)?;
        let text: String = blocks.iter().filter(|b| b.kind == "text").map(|b| b.text.as_str()).collect();
        prop_assert_eq!(text, il.content.concat());
        let thinking: String = blocks.iter().filter(|b| b.kind == "thinking").map(|b| b.text.as_str()).collect();
        prop_assert_eq!(thinking, il.reasoning.concat());
        let tool_blocks: Vec<&Block> = blocks.iter().filter(|b| b.kind == "tool_use").collect();
        prop_assert_eq!(tool_blocks.len(), il.tools.len());
        for (k, (args, _)) in il.tools.iter().enumerate() {
            let b = tool_blocks.iter().find(|b| b.id == format!("call_{k}")).unwrap();
            prop_assert_eq!(&b.name, &format!("tool_{k}"));
            prop_assert_eq!(&b.text, args, "tool {} got exactly its JSON", k);
            prop_assert!(serde_json::from_str::<Value>(&b.text).unwrap().is_object());
        }
        let want = if il.tools.is_empty() { "end_turn" } else { "tool_use" };
        prop_assert_eq!(&delta["delta"]["stop_reason"], want);
        prop_assert_eq!(&delta["usage"]["output_tokens"], 4);
    }

    #[test]
    fn openai_to_anthropic_truncated_streams_end_with_an_error(
        il in interleaving(),
        at in 0usize..4000,
    ) {
        let body = openai_body(&il);
        // Cut before the finish chunk: everything up to some point of the content.
        let finish_at = body.find("\"finish_reason\":\"").unwrap_or(body.len());
        let frame_start = body[..finish_at].rfind("data: ").unwrap_or(0);
        let cut = at % (frame_start + 1);
        let st = a2o_state();
        let mut t = OpenAiSseToAnthropic::new(&st);
        let mut out = Vec::new();
        t.feed(&body.as_bytes()[..cut], &mut out);
        prop_assert_eq!(t.finish(&mut out), StreamEnd::Truncated);
        let s = String::from_utf8(out).unwrap();
        prop_assert!(s.ends_with("\n\n"));
        prop_assert!(!s.contains("message_stop"));
        let last = s.trim_end().rsplit("\n\n").next().unwrap();
        prop_assert!(last.starts_with("event: error\n"), "{}", last);
    }

    #[test]
    fn anthropic_to_openai_split_and_noise_invariance(
        specs in specs(),
        ending in ending(),
        splits in prop::collection::vec(0usize..64, 0..24),
    ) {
        let events = anthropic_events(&specs, ending);
        let mut body = anthropic_body(&events, false).into_bytes();
        let mut noisy = anthropic_body(&events, true).into_bytes();
        if let Ending::Truncate(f) = ending {
            body.truncate(body.len() * f as usize / 1000);
            noisy.clear();
        }
        let st = o2a_state();
        let run = |b: &[u8]| split_invariant(
            b,
            &splits,
            || AnthropicSseToOpenAi::new(&st),
            |t, b, o| t.feed(b, o),
            |t, o| t.finish(o),
        );
        let (out, end) = run(&body)?;
        if !noisy.is_empty() {
            let (out2, end2) = run(&noisy)?;
            prop_assert_eq!(&out, &out2, "noise changes nothing");
            prop_assert_eq!(end, end2);
        }
        let s = String::from_utf8(out).unwrap();
        let frames: Vec<&str> = s.split("\n\n").filter(|f| !f.is_empty()).collect();
        let done = frames.last() == Some(&"data: [DONE]");
        prop_assert_eq!(done, end == StreamEnd::Complete);
        let chunks: Vec<Value> = frames
            .iter()
            .filter(|f| **f != "data: [DONE]")
            .map(|f| serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        match ending {
            Ending::Complete => prop_assert_eq!(end, StreamEnd::Complete),
            Ending::Error => prop_assert_eq!(end, StreamEnd::UpstreamError),
            Ending::Truncate(_) => prop_assert!(end != StreamEnd::UpstreamError),
        }
        if end != StreamEnd::Complete {
            prop_assert!(chunks.last().unwrap().get("error").is_some());
            prop_assert!(chunks.iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
            return Ok(());
        }
        // Tool indices count tools 0, 1, 2…; id and name only in each call's first fragment.
        let mut args: Vec<String> = Vec::new();
        for c in &chunks {
            for tc in c["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().unwrap() as usize;
                if tc.get("id").is_some() {
                    prop_assert_eq!(i, args.len());
                    prop_assert!(tc["function"]["name"].is_string());
                    args.push(String::new());
                } else {
                    prop_assert!(i < args.len());
                    prop_assert!(tc["function"].get("name").is_none());
                }
                args[i].push_str(tc["function"]["arguments"].as_str().unwrap());
            }
        }
        let want: Vec<String> = specs
            .iter()
            .filter_map(|s| match s {
                Spec::Tool(a, _) if a.is_empty() => Some("{}".to_string()),
                Spec::Tool(a, _) => Some(a.clone()),
                _ => None,
            })
            .collect();
        prop_assert_eq!(args, want);
        let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        let text: String = specs.iter().filter_map(|s| match s { Spec::Text(p) => Some(p.concat()), _ => None }).collect();
        prop_assert_eq!(content, text);
        let finishes: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
        let tools = specs.iter().any(|s| matches!(s, Spec::Tool(..)));
        let want_finish = json!(if tools { "tool_calls" } else { "stop" });
        prop_assert_eq!(finishes, vec![&want_finish]);
        prop_assert_eq!(&chunks.last().unwrap()["usage"]["prompt_tokens"], 13);
        prop_assert_eq!(&chunks.last().unwrap()["usage"]["completion_tokens"], 7);
    }
}
