//! [`Engine`] over the Docker Engine API (bollard, local socket or TCP).
//!
//! Traps handled here (see `specs/control-plane.md` §2): the client version is
//! negotiated (bollard defaults to a newer API than many daemons speak); the client
//! timeout covers `docker stop`'s grace; restart policy is `no` because the controller
//! runs its own backoff; the image's own HEALTHCHECK is disabled because the controller
//! probes the backend itself.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest, HealthConfig, HostConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::engine::{Container, ContainerSpec, Death, Engine, EngineError, OnProgress, Progress};
use super::engine::{INSTANCE_LABEL, MANAGED_LABEL};
use crate::config::{GpuVendor, Gpus};

/// The Docker engine.
pub struct DockerEngine {
    docker: Docker,
    host: String,
}

fn err(what: &str, host: &str, e: bollard::errors::Error) -> EngineError {
    EngineError(format!("{what}: {e} (Docker engine at {host})"))
}

impl DockerEngine {
    /// Connects to `host` (`unix:///…` or `tcp://…`) and negotiates the API version.
    /// `timeout` bounds each call until its response headers (make it longer than the
    /// stop grace).
    pub async fn connect(host: &str, timeout: Duration) -> Result<Self, EngineError> {
        let secs = timeout.as_secs().max(1);
        let docker = if host.starts_with("unix://") {
            Docker::connect_with_socket(host, secs, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_http(host, secs, bollard::API_DEFAULT_VERSION)
        }
        .map_err(|e| err("cannot connect", host, e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| err("the engine does not answer", host, e))?;
        Ok(Self {
            docker,
            host: host.to_string(),
        })
    }

    fn e(&self, what: &str) -> impl Fn(bollard::errors::Error) -> EngineError + '_ {
        let what = what.to_string();
        move |e| err(&what, &self.host, e)
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn host_config(spec: &ContainerSpec) -> HostConfig {
    let mut ports = HashMap::new();
    ports.insert(
        format!("{}/tcp", spec.port),
        Some(vec![PortBinding {
            host_ip: Some(spec.host_ip.clone()),
            host_port: Some(if spec.host_port == 0 {
                String::new()
            } else {
                spec.host_port.to_string()
            }),
        }]),
    );
    let mut h = HostConfig {
        port_bindings: Some(ports),
        binds: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    match spec.shm_bytes {
        Some(b) => h.shm_size = Some(b),
        // vLLM and SGLang use shared memory between their processes.
        None if spec.gpus != Gpus::None => h.ipc_mode = Some("host".into()),
        None => {}
    }
    match (&spec.gpus, spec.vendor) {
        (Gpus::None, _) => {}
        (_, GpuVendor::Amd) => {
            h.devices = Some(
                ["/dev/kfd", "/dev/dri"]
                    .iter()
                    .map(|d| DeviceMapping {
                        path_on_host: Some((*d).into()),
                        path_in_container: Some((*d).into()),
                        cgroup_permissions: Some("rwm".into()),
                    })
                    .collect(),
            );
            h.group_add = Some(vec!["video".into()]);
            h.security_opt = Some(vec!["seccomp=unconfined".into()]);
            h.cap_add = Some(vec!["SYS_PTRACE".into()]);
        }
        (g, _) => {
            let (count, ids) = match g {
                Gpus::Ids(ids) => (None, Some(ids.clone())),
                _ => (Some(-1), None),
            };
            h.device_requests = Some(vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count,
                device_ids: ids,
                capabilities: Some(vec![vec!["gpu".into()]]),
                options: Some(HashMap::new()),
            }]);
        }
    }
    h
}

/// The create body for `spec` (public for the test of the GPU flags).
pub fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut env = spec.env.clone();
    if spec.gpus != Gpus::None && spec.vendor != GpuVendor::Amd {
        // nvidia-smi inside the container (GPU stats) needs the utility capability.
        env.push("NVIDIA_DRIVER_CAPABILITIES=compute,utility".into());
    }
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: Some(spec.args.clone()),
        env: Some(env),
        exposed_ports: Some(vec![format!("{}/tcp", spec.port)]),
        labels: Some(spec.labels.iter().cloned().collect()),
        healthcheck: Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        stop_timeout: Some(spec.stop_timeout_secs),
        host_config: Some(host_config(spec)),
        ..Default::default()
    }
}

fn from_inspect(c: bollard::models::ContainerInspectResponse) -> Container {
    let state = c.state.unwrap_or_default();
    let host_port = c.network_settings.and_then(|n| n.ports).and_then(|ports| {
        ports
            .into_values()
            .flatten()
            .flatten()
            .find_map(|b| b.host_port.and_then(|p| p.parse().ok()))
    });
    Container {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
        running: state.running.unwrap_or(false),
        status: state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()),
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        host_port,
    }
}

#[async_trait]
impl Engine for DockerEngine {
    async fn ping(&self) -> Result<(), EngineError> {
        self.docker.ping().await.map(|_| ()).map_err(self.e("ping"))
    }

    async fn gpu_runtime(&self) -> Result<bool, EngineError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(self.e("cannot read the engine's info"))?;
        Ok(info
            .runtimes
            .is_some_and(|r| r.keys().any(|k| k.contains("nvidia")))
            || info.default_runtime.is_some_and(|r| r.contains("nvidia")))
    }

    async fn image_present(&self, image: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(err("cannot inspect the image", &self.host, e)),
        }
    }

    async fn pull(&self, image: &str, progress: OnProgress<'_>) -> Result<(), EngineError> {
        let (repo, tag) = match image.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (image, "latest"),
        };
        let opts = CreateImageOptionsBuilder::default()
            .from_image(repo)
            .tag(tag)
            .build();
        let mut s = self.docker.create_image(Some(opts), None, None);
        let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
        while let Some(item) = s.next().await {
            let info = item.map_err(|e| {
                EngineError(format!(
                    "pulling {image} failed: {e} (an engine without registry access needs the image built or loaded locally)"
                ))
            })?;
            if let Some(d) = info.error_detail {
                return Err(EngineError(format!(
                    "pulling {image} failed: {}",
                    d.message.unwrap_or_default()
                )));
            }
            if let (Some(id), Some(p)) = (info.id.clone(), info.progress_detail) {
                if let (Some(c), Some(t)) = (p.current, p.total) {
                    layers.insert(id, (c.max(0) as u64, t.max(0) as u64));
                }
            }
            progress(Progress {
                status: info.status.unwrap_or_default(),
                completed: layers.values().map(|v| v.0).sum(),
                total: layers.values().map(|v| v.1).sum(),
            });
        }
        Ok(())
    }

    async fn inspect(&self, name: &str) -> Result<Option<Container>, EngineError> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(from_inspect(c))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(err("cannot inspect the container", &self.host, e)),
        }
    }

    async fn list_managed(&self, instance: &str) -> Result<Vec<Container>, EngineError> {
        let mut filters = HashMap::new();
        filters.insert(
            "label",
            vec![
                format!("{MANAGED_LABEL}=true"),
                format!("{INSTANCE_LABEL}={instance}"),
            ],
        );
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(self.e("cannot list containers"))?;
        let mut out = Vec::new();
        for c in list {
            if let Some(id) = c.id {
                if let Some(c) = self.inspect(&id).await? {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    async fn create_start(&self, spec: &ContainerSpec) -> Result<Container, EngineError> {
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let c = self
            .docker
            .create_container(Some(opts), create_body(spec))
            .await
            .map_err(|e| match &e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => EngineError(format!(
                    "the image {} is not present and could not be pulled",
                    spec.image
                )),
                _ => err("cannot create the container", &self.host, e),
            })?;
        if let Err(e) = self.docker.start_container(&c.id, None).await {
            let _ = self
                .docker
                .remove_container(
                    &c.id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            return Err(err("cannot start the container", &self.host, e));
        }
        self.inspect(&c.id)
            .await?
            .ok_or_else(|| EngineError("the container vanished right after it started".into()))
    }

    async fn stop_remove(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptionsBuilder::default().t(t).build()),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(err("cannot stop the container", &self.host, e)),
        }
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // 409: removal already in progress.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(err("cannot remove the container", &self.host, e)),
        }
    }

    fn deaths(
        &self,
        instance: &str,
    ) -> futures_util::stream::BoxStream<'static, Result<Death, EngineError>> {
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container".to_string()]);
        filters.insert("event", vec!["die".to_string(), "oom".to_string()]);
        filters.insert(
            "label",
            vec![
                format!("{MANAGED_LABEL}=true"),
                format!("{INSTANCE_LABEL}={instance}"),
            ],
        );
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        let host = self.host.clone();
        self.docker
            .events(Some(opts))
            .map(move |m| {
                let m = m.map_err(|e| err("the event stream failed", &host, e))?;
                let actor = m.actor.unwrap_or_default();
                let attrs = actor.attributes.unwrap_or_default();
                Ok(Death {
                    id: actor.id.unwrap_or_default(),
                    action: m.action.unwrap_or_default(),
                    exit_code: attrs.get("exitCode").cloned(),
                })
            })
            .boxed()
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<(i64, String), EngineError> {
        use bollard::exec::{StartExecOptions, StartExecResults};
        let run = async {
            let exec = self
                .docker
                .create_exec(
                    id,
                    bollard::models::ExecConfig {
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                        ..Default::default()
                    },
                )
                .await
                .map_err(self.e("cannot exec in the container"))?;
            let mut out = Vec::new();
            if let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(
                    &exec.id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: false,
                        output_capacity: None,
                    }),
                )
                .await
                .map_err(self.e("cannot exec in the container"))?
            {
                while let Some(m) = output.next().await {
                    if let Ok(bollard::container::LogOutput::StdOut { message }) = m {
                        out.extend_from_slice(&message);
                    }
                }
            }
            let code = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .map_err(self.e("cannot inspect the exec"))?
                .exit_code
                .unwrap_or(-1);
            Ok((code, String::from_utf8_lossy(&out).into_owned()))
        };
        tokio::time::timeout(timeout, run).await.map_err(|_| {
            EngineError(format!(
                "`{}` did not finish within {timeout:?}",
                cmd.join(" ")
            ))
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(gpus: Gpus, vendor: GpuVendor) -> ContainerSpec {
        ContainerSpec {
            name: "switchyard-vllm".into(),
            image: "vllm/vllm-openai:v0.11.0".into(),
            entrypoint: None,
            args: vec!["m".into()],
            env: vec!["HF_TOKEN=x".into()],
            volumes: vec!["/srv/hf:/root/.cache/huggingface".into()],
            port: 8000,
            host_port: 0,
            host_ip: "127.0.0.1".into(),
            gpus,
            vendor,
            shm_bytes: None,
            labels: vec![(MANAGED_LABEL.into(), "true".into())],
            stop_timeout_secs: 30,
        }
    }

    #[test]
    fn nvidia_all_is_docker_run_gpus_all() {
        let b = create_body(&spec(Gpus::All, GpuVendor::Nvidia));
        let h = b.host_config.unwrap();
        let d = &h.device_requests.unwrap()[0];
        assert_eq!(d.driver.as_deref(), Some("nvidia"));
        assert_eq!(d.count, Some(-1));
        assert_eq!(d.device_ids, None);
        assert_eq!(d.capabilities, Some(vec![vec!["gpu".to_string()]]));
        assert_eq!(h.ipc_mode.as_deref(), Some("host"));
        assert_eq!(
            h.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        let bind = &h.port_bindings.unwrap()["8000/tcp"].clone().unwrap()[0];
        assert_eq!(bind.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(bind.host_port.as_deref(), Some(""), "engine-assigned");
        assert!(b
            .env
            .unwrap()
            .contains(&"NVIDIA_DRIVER_CAPABILITIES=compute,utility".to_string()));
        assert_eq!(b.healthcheck.unwrap().test, Some(vec!["NONE".to_string()]));
        assert_eq!(b.labels.unwrap()[MANAGED_LABEL], "true");
    }

    #[test]
    fn device_ids_amd_and_none() {
        let h = create_body(&spec(
            Gpus::Ids(vec!["0".into(), "2".into()]),
            GpuVendor::Nvidia,
        ))
        .host_config
        .unwrap();
        let d = &h.device_requests.unwrap()[0];
        assert_eq!(d.count, None);
        assert_eq!(d.device_ids, Some(vec!["0".to_string(), "2".to_string()]));
        let h = create_body(&spec(Gpus::All, GpuVendor::Amd))
            .host_config
            .unwrap();
        assert!(h.device_requests.is_none());
        let devs: Vec<_> = h
            .devices
            .unwrap()
            .into_iter()
            .filter_map(|d| d.path_on_host)
            .collect();
        assert_eq!(devs, vec!["/dev/kfd", "/dev/dri"]);
        assert_eq!(h.group_add, Some(vec!["video".to_string()]));
        assert_eq!(h.security_opt, Some(vec!["seccomp=unconfined".to_string()]));
        let mut s = spec(Gpus::None, GpuVendor::Nvidia);
        s.shm_bytes = Some(1 << 30);
        let b = create_body(&s);
        let h = b.host_config.unwrap();
        assert!(h.device_requests.is_none() && h.devices.is_none());
        assert_eq!(h.shm_size, Some(1 << 30));
        assert!(!b.env.unwrap().iter().any(|e| e.starts_with("NVIDIA_")));
    }
}
