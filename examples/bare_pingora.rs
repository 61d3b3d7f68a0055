//! A bare Pingora passthrough with the same build and runtime settings as Switchyard
//! (one thread, no work stealing, mimalloc, the same release profile): the baseline the
//! load test compares the gateway's own cost against.
//!
//!   cargo build --release --example bare_pingora
//!   target/release/examples/bare_pingora 127.0.0.1:8090 127.0.0.1:8000 [--modules] [--wbuf N]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use mimalloc::MiMalloc;
use pingora_core::listeners::ListenerConfig;
use pingora_core::modules::http::HttpModules;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::Result;
use pingora_proxy::{ProxyHttp, Session};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

struct Bare {
    peer: HttpPeer,
    modules: bool,
}

impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        if self.modules {
            modules.add_module(
                pingora_core::modules::http::compression::ResponseCompressionBuilder::enable(0),
            );
        }
    }

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM [--modules] [--wbuf N] [--threads N]");
        std::process::exit(2);
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let conf = ServerConf {
        threads: flag("--threads").unwrap_or(1),
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        upstream_keepalive_pool_size: 1024,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let upstream: std::net::SocketAddr = match args[2].parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad upstream address: {e}");
            std::process::exit(2);
        }
    };
    let bare = Bare {
        peer: HttpPeer::new(upstream, false, String::new()),
        modules: args.iter().any(|a| a == "--modules"),
    };
    let mut svc = pingora_proxy::http_proxy_service(&server.configuration, bare);
    let mut l = ListenerConfig::tcp(args[1].clone());
    if let Some(w) = flag("--wbuf") {
        l = l.l4_buffer(L4BufferSettings::default().write(w));
    }
    svc.add_listener(l);
    server.add_service(svc);
    println!("bare_pingora listening on {}", args[1]);
    server.run_forever();
}
