//! Docker for the tests that need it: the engine's CLI, and a FROM-scratch image of the
//! project's own mock-llm built once per test binary.

use std::process::Command;
use std::sync::OnceLock;

use super::MOCK_LLM;

/// The mock-llm image's tag.
pub const IMAGE: &str = "switchyard-test/mock-llm:dev";

/// Runs `docker args…`: (succeeded, stdout and stderr).
pub fn docker(args: &[&str]) -> (bool, String) {
    match Command::new("docker").args(args).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// Builds the mock-llm image once per run; `None` (loudly) without an engine.
pub fn image() -> Option<&'static str> {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let ok = *BUILT.get_or_init(|| {
        let (up, out) = docker(&["info", "--format", "{{.ServerVersion}}"]);
        if !up {
            eprintln!("\n*** NO DOCKER ENGINE ANSWERS: the control-plane container tests are SKIPPED ({}) ***\n", out.trim());
            return false;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(MOCK_LLM, dir.path().join("mock-llm")).unwrap();
        // The binary's shared libraries, so FROM scratch runs it.
        let ldd = Command::new("ldd").arg(MOCK_LLM).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if lib.starts_with('/') {
                let to = dir.path().join(lib.trim_start_matches('/'));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(lib, &to).unwrap();
            }
        }
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY . /\nLABEL switchyard.test=true\nENTRYPOINT [\"/mock-llm\"]\n",
        )
        .unwrap();
        let (built, out) = docker(&["build", "-q", "-t", IMAGE, dir.path().to_str().unwrap()]);
        // The image this tag pointed to before is left untagged: remove it.
        docker(&["image", "prune", "-f", "--filter", "label=switchyard.test=true"]);
        assert!(built, "docker build of the mock-llm image failed: {out}");
        true
    });
    ok.then_some(IMAGE)
}
