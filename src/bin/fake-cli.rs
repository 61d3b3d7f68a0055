//! `fake-cli`: a stand-in for the `claude` CLI in stream-json mode, to test a pool of CLI
//! processes without the real CLI, an account or the network.
//!
//! Started like the real one (`--output-format stream-json --input-format stream-json
//! --verbose [--include-partial-messages] [--model M] [--session-id=ID | --resume=ID]`;
//! the other flags the real CLI takes are accepted and ignored), it prints the
//! `system`/`init` line, then answers every `user` line of stdin with
//!
//! - with `--include-partial-messages`: `stream_event` lines whose `event` is a raw
//!   Anthropic stream event (`message_start`, `content_block_start`, `ping`, one
//!   `content_block_delta` per word, `content_block_stop`, then after the assistant
//!   line `message_delta`, `message_stop`);
//! - the `assistant` line (written at `content_block_stop`, as the CLI does, so its
//!   `stop_reason` is `null`; the `result` carries the stop reason);
//! - the `result` line (`subtype: success`),
//!
//! and waits for more stdin; EOF on stdin ends it with status 0. The reply echoes the
//! text of the user line. A `control_request` gets a `control_response` (unknown
//! subtypes an error one); `interrupt` during a turn ends it with a `result` of subtype
//! `error_during_execution`.
//!
//! Faults, as flags or as the same-named `FAKE_CLI_*` environment variables (flags win):
//! `--startup-delay-ms`, `--token-delay-ms`, `--crash-after`, `--crash-tokens`,
//! `--hang-after`, `--garbage-turn`, `--garbage-text`, `--ignore-interrupt`,
//! `--lazy-init`; `--help` describes them.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use switchyard::mockgen;
use switchyard::mockgen_anthropic::{Answer, Block, Tokens, Usage};

const HELP: &str = "\
fake-cli: a stand-in for the `claude` CLI in stream-json mode (NDJSON on stdin and stdout).

Usage: fake-cli --output-format stream-json --input-format stream-json --verbose
                [--include-partial-messages] [--model M] [--session-id=ID | --resume=ID]
                [fault options] [other claude flags, ignored]

Every `{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":…}}` line is answered with an
echo of its text: stream_event lines (with --include-partial-messages), an assistant line
and a result line. EOF on stdin ends the process (status 0).

Fault options (each also read from the environment variable in brackets; flags win):
  --startup-delay-ms N  wait N ms before the init line (input is queued)  [FAKE_CLI_STARTUP_DELAY_MS]
  --token-delay-ms N    wait N ms before each word of a reply            [FAKE_CLI_TOKEN_DELAY_MS]
  --crash-after N       after N turns, the next one exits with status 1 and no result
                                                                         [FAKE_CLI_CRASH_AFTER]
  --crash-tokens K      words the crashing turn writes first: stream_event deltas, or without
                        partial messages the assistant line (default 0: nothing)
                                                                         [FAKE_CLI_CRASH_TOKENS]
  --hang-after N        after the result of turn N (0: after init) stop reading and writing
                                                                         [FAKE_CLI_HANG_AFTER]
  --garbage-turn N      turn N (from 1) first prints a line that is not JSON
                                                                         [FAKE_CLI_GARBAGE_TURN]
  --garbage-text S      that line (default `{not json`)                  [FAKE_CLI_GARBAGE_TEXT]
  --ignore-interrupt    interrupts get no control_response and do not stop the turn
                                                                         [FAKE_CLI_IGNORE_INTERRUPT=1]
  --lazy-init           print the init line only when the first user line arrives
                                                                         [FAKE_CLI_LAZY_INIT=1]
";

/// Flags of the real CLI that take a value; accepted and ignored with their value.
const IGNORED_WITH_VALUE: &[&str] = &[
    "--system-prompt",
    "--append-system-prompt",
    "--tools",
    "--allowedTools",
    "--allowed-tools",
    "--disallowedTools",
    "--disallowed-tools",
    "--max-turns",
    "--permission-mode",
    "--permission-prompt-tool",
    "--setting-sources",
    "--settings",
    "--mcp-config",
    "--fallback-model",
    "--add-dir",
    "--agents",
    "--max-thinking-tokens",
    "--max-budget-usd",
    "--betas",
];

/// What the process is told to be, from its flags and environment.
#[derive(Debug, Clone)]
struct Opts {
    model: String,
    partial: bool,
    session_id: Option<String>,
    output_format: String,
    input_format: String,
    verbose: bool,
    startup_delay: Duration,
    token_delay: Duration,
    crash_after: Option<u64>,
    crash_tokens: usize,
    hang_after: Option<u64>,
    garbage_turn: Option<u64>,
    garbage_text: String,
    ignore_interrupt: bool,
    lazy_init: bool,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

fn parse_u64(flag: &str, v: Option<String>) -> Result<u64, String> {
    v.as_deref()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("{flag} needs a number"))
}

impl Opts {
    /// The options of a command line; `None` when it asks for `--help`.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Self>, String> {
        let mut o = Opts {
            model: "fake-model".to_string(),
            partial: false,
            session_id: None,
            output_format: "text".to_string(),
            input_format: "text".to_string(),
            verbose: false,
            startup_delay: Duration::from_millis(env_u64("FAKE_CLI_STARTUP_DELAY_MS").unwrap_or(0)),
            token_delay: Duration::from_millis(env_u64("FAKE_CLI_TOKEN_DELAY_MS").unwrap_or(0)),
            crash_after: env_u64("FAKE_CLI_CRASH_AFTER"),
            crash_tokens: env_u64("FAKE_CLI_CRASH_TOKENS").unwrap_or(0) as usize,
            hang_after: env_u64("FAKE_CLI_HANG_AFTER"),
            garbage_turn: env_u64("FAKE_CLI_GARBAGE_TURN"),
            garbage_text: std::env::var("FAKE_CLI_GARBAGE_TEXT")
                .unwrap_or_else(|_| "{not json".to_string()),
            ignore_interrupt: env_flag("FAKE_CLI_IGNORE_INTERRUPT"),
            lazy_init: env_flag("FAKE_CLI_LAZY_INIT"),
        };
        while let Some(arg) = args.next() {
            // `--flag=value` and `--flag value` are both accepted, as the real CLI does.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg, None),
            };
            let mut value = || inline.clone().or_else(|| args.next());
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--model" => o.model = value().ok_or("--model needs a value")?,
                "--output-format" => o.output_format = value().unwrap_or_default(),
                "--input-format" => o.input_format = value().unwrap_or_default(),
                "--session-id" | "--resume" | "-r" => o.session_id = value(),
                "--verbose" => o.verbose = true,
                "--include-partial-messages" => o.partial = true,
                "--startup-delay-ms" => {
                    o.startup_delay = Duration::from_millis(parse_u64(&flag, value())?)
                }
                "--token-delay-ms" => {
                    o.token_delay = Duration::from_millis(parse_u64(&flag, value())?)
                }
                "--crash-after" => o.crash_after = Some(parse_u64(&flag, value())?),
                "--crash-tokens" => o.crash_tokens = parse_u64(&flag, value())? as usize,
                "--hang-after" => o.hang_after = Some(parse_u64(&flag, value())?),
                "--garbage-turn" => o.garbage_turn = Some(parse_u64(&flag, value())?),
                "--garbage-text" => o.garbage_text = value().unwrap_or_default(),
                "--ignore-interrupt" => o.ignore_interrupt = true,
                "--lazy-init" => o.lazy_init = true,
                f if IGNORED_WITH_VALUE.contains(&f) => {
                    let _ = value();
                }
                // Everything else the real CLI takes (`-p`, `--strict-mcp-config`, a
                // prompt, …) is accepted and ignored.
                _ => {}
            }
        }
        Ok(Some(o))
    }

    /// The real CLI's checks of the flag combination this fake supports.
    fn check(&self) -> Result<(), String> {
        if self.output_format != "stream-json" || self.input_format != "stream-json" {
            return Err("fake-cli supports only --output-format stream-json with \
                        --input-format stream-json"
                .to_string());
        }
        if !self.verbose {
            return Err(
                "Error: When using --print, --output-format=stream-json requires --verbose"
                    .to_string(),
            );
        }
        Ok(())
    }
}

/// A line of stdin, or its end.
enum Input {
    Line(String),
    Eof,
}

/// How a turn's wait ended.
#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    Interrupted,
}

/// A small xorshift generator for ids (no crate needed; uniqueness per process is all
/// that matters).
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }
}

struct Cli {
    opts: Opts,
    rx: Receiver<Input>,
    // Kept so that the channel never reports "disconnected" after stdin's end: waits
    // with a timeout then really wait, instead of returning at once.
    _tx: Sender<Input>,
    queued: VecDeque<Input>,
    deferred: VecDeque<Value>,
    eof: bool,
    started: u64,
    completed: u64,
    init_sent: bool,
    session_id: String,
    ids: Ids,
    total_tokens: u64,
}

impl Cli {
    fn emit(&mut self, v: &Value) {
        let mut line = serde_json::to_string(v).unwrap_or_default();
        line.push('\n');
        self.write_raw(&line);
    }

    fn write_raw(&mut self, line: &str) {
        let mut out = std::io::stdout().lock();
        if out
            .write_all(line.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            // Nobody reads our answers any more.
            std::process::exit(1);
        }
    }

    fn envelope(&mut self, mut v: Value) -> Value {
        v["session_id"] = json!(self.session_id);
        v["uuid"] = json!(self.ids.uuid());
        v
    }

    fn stream_event(&mut self, event: Value) {
        let v = self.envelope(json!({"type": "stream_event", "event": event,
                                     "parent_tool_use_id": null}));
        self.emit(&v);
    }

    fn init(&mut self) {
        self.init_sent = true;
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let v = self.envelope(json!({
            "type": "system", "subtype": "init", "cwd": cwd, "tools": [], "mcp_servers": [],
            "model": self.opts.model, "permissionMode": "default", "slash_commands": [],
            "apiKeySource": "none", "claude_code_version": "0.0.0-fake-cli",
            "output_style": "default", "agents": [], "skills": [], "plugins": [],
        }));
        self.emit(&v);
    }

    fn recv_channel(&self, deadline: Option<Instant>) -> Option<Input> {
        match deadline {
            None => Some(self.rx.recv().unwrap_or(Input::Eof)),
            Some(d) => match self
                .rx
                .recv_timeout(d.saturating_duration_since(Instant::now()))
            {
                Ok(i) => Some(i),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Input::Eof),
            },
        }
    }

    /// The next input: queued first, then stdin until `deadline` (`None`: no limit).
    fn recv(&mut self, deadline: Option<Instant>) -> Option<Input> {
        if let Some(i) = self.queued.pop_front() {
            return Some(i);
        }
        if self.eof {
            // Nothing more will come: just let the time pass.
            if let Some(d) = deadline {
                let _ = self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()));
            }
            return None;
        }
        self.recv_channel(deadline)
    }

    /// Parses a stdin line; a line that is not a JSON object is reported and skipped.
    fn parse(line: &str) -> Option<Value> {
        if line.trim().is_empty() {
            return None;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => Some(v),
            _ => {
                eprintln!("fake-cli: skipping a stdin line that is not a JSON object");
                None
            }
        }
    }

    /// Waits before the init line; stdin is read and queued meanwhile.
    fn startup(&mut self) {
        let deadline = Instant::now() + self.opts.startup_delay;
        while Instant::now() < deadline {
            match self.recv_channel(Some(deadline)) {
                Some(i) => self.queued.push_back(i),
                None => break,
            }
        }
    }

    fn control_response(&mut self, request_id: &Value, response: Value) {
        let v = json!({"type": "control_response", "response": {
            "subtype": "success", "request_id": request_id, "response": response}});
        self.emit(&v);
    }

    /// Answers a control request; returns whether it interrupts the turn in progress.
    fn control(&mut self, v: &Value) -> bool {
        let id = v.get("request_id").cloned().unwrap_or(Value::Null);
        let subtype = v
            .pointer("/request/subtype")
            .and_then(Value::as_str)
            .unwrap_or("");
        match subtype {
            "interrupt" if self.opts.ignore_interrupt => false,
            "interrupt" => {
                self.control_response(&id, json!({}));
                true
            }
            "initialize" => {
                let model = self.opts.model.clone();
                self.control_response(
                    &id,
                    json!({"commands": [], "output_style": "default",
                           "available_output_styles": ["default"],
                           "models": [{"value": model, "displayName": model, "description": ""}],
                           "account": {}}),
                );
                false
            }
            "set_model" => {
                if let Some(m) = v.pointer("/request/model").and_then(Value::as_str) {
                    self.opts.model = m.to_string();
                }
                self.control_response(&id, json!({}));
                false
            }
            "set_permission_mode" => {
                self.control_response(&id, json!({}));
                false
            }
            "get_context_usage" => {
                let used = self.total_tokens;
                self.control_response(&id, json!({"totalTokens": used, "maxTokens": 200_000}));
                false
            }
            other => {
                let v = json!({"type": "control_response", "response": {
                    "subtype": "error", "request_id": id,
                    "error": format!("Unsupported control request subtype: {other}")}});
                self.emit(&v);
                false
            }
        }
    }

    /// Waits `d` during a turn, answering control requests and keeping user lines for
    /// later; an interrupt ends the wait early.
    fn pause(&mut self, d: Duration) -> Flow {
        let deadline = Instant::now() + d;
        loop {
            // A zero wait still looks at what is already there, so an interrupt is seen
            // between two words even without a token delay.
            let input = if d.is_zero() {
                match self.queued.pop_front() {
                    Some(i) => Some(i),
                    None => self.rx.try_recv().ok(),
                }
            } else {
                self.recv(Some(deadline))
            };
            let Some(input) = input else {
                return Flow::Go;
            };
            match input {
                Input::Eof => self.eof = true,
                Input::Line(l) => {
                    let Some(v) = Self::parse(&l) else { continue };
                    let kind = v.get("type").and_then(Value::as_str);
                    if kind == Some("control_request") && self.control(&v) {
                        return Flow::Interrupted;
                    }
                    if kind == Some("user") {
                        self.deferred.push_back(v);
                    }
                }
            }
            if !d.is_zero() && Instant::now() >= deadline {
                return Flow::Go;
            }
        }
    }

    fn crash(&self) -> ! {
        eprintln!(
            "fake-cli: exiting in turn {} as asked (--crash-after)",
            self.started
        );
        std::process::exit(1);
    }

    fn hang(&self) -> ! {
        eprintln!("fake-cli: hanging as asked (--hang-after)");
        loop {
            std::thread::park();
        }
    }

    fn result(&mut self, t0: Instant, ok: bool, text: &str, usage: &Usage) {
        let ms = t0.elapsed().as_millis() as u64;
        let cost = (usage.input as f64 * 3.0 + usage.output as f64 * 15.0) / 1e6;
        let mut v = json!({
            "type": "result", "is_error": !ok, "duration_ms": ms, "duration_api_ms": ms,
            "num_turns": self.started, "total_cost_usd": cost, "usage": usage.to_value(),
            "permission_denials": [],
        });
        if ok {
            v["subtype"] = json!("success");
            v["result"] = json!(text);
            v["stop_reason"] = json!("end_turn");
        } else {
            v["subtype"] = json!("error_during_execution");
            v["stop_reason"] = Value::Null;
        }
        let v = self.envelope(v);
        self.emit(&v);
    }

    /// One turn: the answer to a user line.
    fn turn(&mut self, frame: &Value) {
        self.started += 1;
        let t0 = Instant::now();
        if !self.init_sent {
            self.init();
        }
        let crashing = self.opts.crash_after == Some(self.started - 1);
        if crashing && self.opts.crash_tokens == 0 {
            self.crash();
        }
        if self.opts.garbage_turn == Some(self.started) {
            let line = format!("{}\n", self.opts.garbage_text);
            self.write_raw(&line);
        }
        let text = frame
            .get("message")
            .map(|m| user_text(m.get("content").unwrap_or(&Value::Null)))
            .unwrap_or_default();
        let tokens = mockgen::split_tokens(&text);
        let usage = Usage {
            input: mockgen::estimate_prompt_tokens(text.len()),
            output: tokens.len() as u64,
            ..Usage::default()
        };
        let answer = Answer {
            id: format!("msg_fake{:016x}", self.ids.next()),
            model: self.opts.model.clone(),
            blocks: vec![Block::Text(Tokens::Given(tokens))],
            stop_reason: "end_turn".to_string(),
            usage,
        };
        let mut assistant = answer.message();
        assistant["stop_reason"] = Value::Null;
        let mut written = 0usize;
        let mut so_far = Usage { output: 0, ..usage };
        for event in answer.events(false) {
            if event.is_delta {
                let delay = self.opts.token_delay;
                if self.pause(delay) == Flow::Interrupted {
                    self.result(t0, false, "", &so_far);
                    return;
                }
                so_far.output += 1;
            }
            let stop = event.value["type"] == "content_block_stop";
            if self.opts.partial {
                self.stream_event(event.value);
            }
            if event.is_delta {
                written += 1;
                if crashing && self.opts.partial && written == self.opts.crash_tokens {
                    self.crash();
                }
            }
            if stop {
                let v = self.envelope(json!({"type": "assistant", "message": assistant,
                                             "parent_tool_use_id": null}));
                self.emit(&v);
                if crashing {
                    self.crash();
                }
            }
        }
        self.total_tokens += usage.input + usage.output;
        self.result(t0, true, &text, &usage);
        self.completed += 1;
        if self.opts.hang_after == Some(self.completed) {
            self.hang();
        }
    }

    fn run(&mut self) -> ExitCode {
        self.startup();
        if !self.opts.lazy_init {
            self.init();
        }
        if self.opts.hang_after == Some(0) {
            self.hang();
        }
        loop {
            if let Some(frame) = self.deferred.pop_front() {
                self.turn(&frame);
                continue;
            }
            let Some(input) = self.recv(None) else {
                // stdin is over and nothing is left to answer.
                return ExitCode::SUCCESS;
            };
            let line = match input {
                Input::Eof => {
                    self.eof = true;
                    continue;
                }
                Input::Line(l) => l,
            };
            let Some(v) = Self::parse(&line) else {
                continue;
            };
            match v.get("type").and_then(Value::as_str) {
                Some("user") => self.turn(&v),
                Some("control_request") => {
                    // Idle: an interrupt has nothing to stop.
                    let _ = self.control(&v);
                }
                _ => {}
            }
        }
    }
}

/// The text of a user message's content: the string, or its text blocks joined.
fn user_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn main() -> ExitCode {
    let opts = match Opts::parse(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            let _ = std::io::stdout().write_all(HELP.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-cli: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = opts.check() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let (tx, rx) = mpsc::channel();
    let reader = tx.clone();
    // stdin is read on its own thread so that a turn can see an interrupt while it
    // "generates".
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) => {
                    if reader.send(Input::Line(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = reader.send(Input::Eof);
    });
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    // Never zero: xorshift would stay at zero.
    let seed = (nanos ^ (u64::from(std::process::id()) << 32)) | 1;
    let mut ids = Ids(seed);
    let session_id = opts.session_id.clone().unwrap_or_else(|| ids.uuid());
    let mut cli = Cli {
        opts,
        rx,
        _tx: tx,
        queued: VecDeque::new(),
        deferred: VecDeque::new(),
        eof: false,
        started: 0,
        completed: 0,
        init_sent: false,
        session_id,
        ids,
        total_tokens: 0,
    };
    cli.run()
}
