//! A real Kubernetes control plane for tests, started from the binaries that
//! `tests/harness/build.sh` builds from Kubernetes' own Go modules: etcd, kube-apiserver (RBAC,
//! service-account keys, PodSecurity admission), kube-scheduler with the users' bin-packing
//! profile `my-scheduler` next to `default-scheduler`, kube-controller-manager and kwok (fake
//! kubelets for nodes annotated `kwok.x-k8s.io/node: fake`).
//!
//! Everything listens on free ports of 127.0.0.1 and lives in a temporary directory. Each process
//! runs under `tests/harness/supervise.sh`, which stops it when the control plane is dropped,
//! when the test panics, or when the test process dies for any reason — nothing is left running.
//! `ControlPlane::shared()` gives one control plane per test binary; tests take a namespace each.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[cfg(feature = "aws")]
pub mod moto;
pub mod placement;
pub mod proxy;
pub mod workload;

/// The users' bin-packing profile, as reference/my-scheduler-config.yaml configures it.
pub const BIN_PACKING_PROFILE: &str = "my-scheduler";

/// Annotation that hands a node to kwok.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

const ADMIN_TOKEN: &str = "stowage-test-admin-token";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the built components, or a panic message saying how to build them.
pub fn bin_dir() -> PathBuf {
    let script = repo().join("tests/harness/build.sh");
    let out = Command::new(&script)
        .arg("--dir")
        .output()
        .expect("run tests/harness/build.sh --dir");
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    if !dir.join(".complete").exists() {
        panic!(
            "the test control plane's binaries are not built; run `tests/harness/build.sh` \
             (about 15 minutes cold, cached in ~/.cache/stowage/bin) — expected them in {}",
            dir.display()
        );
    }
    dir
}

/// Polls `check` every 200 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The controllers the test control plane runs (kube-controller-manager `--controllers`).
const CONTROLLERS: &[&str] = &[
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "replicaset-controller",
    "deployment-controller",
    "job-controller",
    "daemonset-controller",
    "statefulset-controller",
    "garbage-collector-controller",
    "disruption-controller",
    "namespace-controller",
];

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A process under `supervise.sh`; dropping it stops the process.
pub struct Supervised {
    name: String,
    child: Child,
    pub log: PathBuf,
}

impl Supervised {
    pub fn spawn(name: &str, dir: &Path, program: &Path, args: &[String]) -> Supervised {
        Supervised::spawn_owning(name, dir, program, args, false)
    }

    /// Like `spawn`, with these environment variables set.
    pub fn spawn_env(
        name: &str,
        dir: &Path,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Supervised {
        Supervised::start(name, dir, program, args, false, env)
    }

    /// Like `spawn`; with `owns_dir`, `dir` is removed when the test process is gone.
    pub fn spawn_owning(
        name: &str,
        dir: &Path,
        program: &Path,
        args: &[String],
        owns_dir: bool,
    ) -> Supervised {
        Supervised::start(name, dir, program, args, owns_dir, &[])
    }

    fn start(
        name: &str,
        dir: &Path,
        program: &Path,
        args: &[String],
        owns_dir: bool,
        env: &[(&str, String)],
    ) -> Supervised {
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(repo().join("tests/harness/supervise.sh"));
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd.arg(std::process::id().to_string()).arg(&log);
        if owns_dir {
            cmd.arg("--remove").arg(dir);
        }
        let child = cmd
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Supervised {
            name: name.into(),
            child,
            log,
        }
    }

    /// The last lines of the process's log, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGKILLs the supervised process itself (not its supervisor): a crash, with no chance
    /// to clean up.
    pub fn kill_hard(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// The supervisor's process id (the process itself is its child).
    pub fn child_id(&self) -> u32 {
        self.child.id()
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `stowage` binary of this build with `args` (a controller, an agent), supervised as
/// `name` in the control plane's directory, with `env` set. (Tests only: an example that
/// shares this module has no such binary path.)
#[cfg(test)]
pub fn stowage_process(
    cp: &ControlPlane,
    name: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> Supervised {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    Supervised::spawn_env(
        name,
        &cp.dir.0,
        Path::new(env!("CARGO_BIN_EXE_stowage")),
        &args,
        env,
    )
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(
    what: &str,
    timeout: Duration,
    procs: &mut [Supervised],
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return;
        }
        for p in procs.iter_mut() {
            if p.exited() {
                panic!("{} exited while waiting for {what}:\n{}", p.name, p.tail());
            }
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| format!("--- {}:\n{}", p.name, p.tail()))
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank; 0 for none.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Waits for kube-apiserver at `server` to answer `/readyz` ok, failing if one of `procs` exits.
fn wait_api_ready(when: &str, server: &str, ca: &Path, limit: Duration, procs: &mut [Supervised]) {
    let readyz = format!("{server}/readyz");
    let ca = ca.display().to_string();
    let bearer = format!("Authorization: Bearer {ADMIN_TOKEN}");
    wait_for(
        &format!("kube-apiserver /readyz{when}"),
        limit,
        procs,
        || {
            curl(&["-sf", "--cacert", &ca, "-H", &bearer, &readyz])
                .is_some_and(|b| b.trim() == "ok")
        },
    );
}

/// A running control plane.
pub struct ControlPlane {
    pub bin: PathBuf,
    /// Admin kubeconfig (user in `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    // Dropped in reverse start order: kwok, controller-manager, scheduler, apiserver, etcd.
    procs: Vec<Supervised>,
    pub dir: TempDir,
    /// etcd's client URL.
    etcd: String,
    /// kube-apiserver's flags, to start it again.
    api_args: Vec<String>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(p) = self.procs.pop() {
            drop(p);
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn kubeconfig(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: user}}\ncurrent-context: test\n",
        ca.display()
    )
}

impl ControlPlane {
    /// One control plane per test binary, started on first use.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        SHARED.get_or_init(ControlPlane::start)
    }

    /// Starts etcd, kube-apiserver, kube-scheduler, kube-controller-manager and kwok.
    pub fn start() -> ControlPlane {
        ControlPlane::start_with(true)
    }

    /// Starts etcd and kube-apiserver only: an API server to fill with objects (the scale
    /// run), where nothing schedules, garbage-collects or runs pods.
    pub fn start_api_only() -> ControlPlane {
        ControlPlane::start_with(false)
    }

    fn start_with(full: bool) -> ControlPlane {
        let started = Instant::now();
        let bin = bin_dir();
        let dir = TempDir::new("stowage-control-plane");
        let d = dir.0.clone();
        let mut procs = Vec::new();

        // Certificates: a CA, the apiserver's serving certificate, the service-account key.
        let ca_key = d.join("ca.key");
        let ca = d.join("ca.crt");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=stowage-test-ca",
            ])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca)
            .stderr(Stdio::null()));
        let serving_key = d.join("apiserver.key");
        let csr = d.join("apiserver.csr");
        let serving = d.join("apiserver.crt");
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=kube-apiserver",
            ])
            .arg("-keyout")
            .arg(&serving_key)
            .arg("-out")
            .arg(&csr)
            .stderr(Stdio::null()));
        let ext = d.join("san.ext");
        write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc,IP:10.96.0.1\n",
        );
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&serving)
            .stderr(Stdio::null()));
        let sa_key = d.join("sa.key");
        let sa_pub = d.join("sa.pub");
        run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&sa_key)
            .arg("2048")
            .stderr(Stdio::null()));
        run(Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(&sa_key)
            .arg("-out")
            .arg(&sa_pub)
            .stderr(Stdio::null()));

        // Identities: admin and kwok in system:masters; the scheduler and the controller
        // manager as their own users with the bootstrap RBAC roles.
        let tokens = d.join("tokens.csv");
        write(
            &tokens,
            &format!(
                "{ADMIN_TOKEN},admin,uid-admin,\"system:masters\"\n\
                 stowage-test-scheduler,system:kube-scheduler,uid-scheduler\n\
                 stowage-test-kcm,system:kube-controller-manager,uid-kcm\n\
                 stowage-test-kwok,kwok,uid-kwok,\"system:masters\"\n"
            ),
        );

        let etcd_port = free_port();
        let etcd_peer = free_port();
        procs.push(Supervised::spawn_owning(
            "etcd",
            &d,
            &bin.join("etcd"),
            &[
                "--name=default".into(),
                format!("--data-dir={}", d.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            true,
        ));
        let etcd_health = format!("http://127.0.0.1:{etcd_port}/health");
        wait_for("etcd", Duration::from_secs(30), &mut procs, || {
            curl(&["-sf", &etcd_health]).is_some_and(|b| b.contains("true"))
        });

        let api_port = free_port();
        let server = format!("https://127.0.0.1:{api_port}");
        let etcd = format!("http://127.0.0.1:{etcd_port}");
        let api_args: Vec<String> = vec![
            format!("--etcd-servers={etcd}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", serving.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", ca.display()),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=Node,RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--enable-admission-plugins=NodeRestriction,PodSecurity".into(),
            // No node-lifecycle controller runs (kwok fakes kubelets without heartbeats), so
            // nothing would lift the not-ready taint this plugin puts on new nodes.
            "--disable-admission-plugins=TaintNodesByCondition".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        procs.push(Supervised::spawn(
            "kube-apiserver",
            &d,
            &bin.join("kube-apiserver"),
            &api_args,
        ));
        let kubeconfig_for = |name: &str, token: &str| {
            let path = d.join(format!("{name}.kubeconfig"));
            write(&path, &kubeconfig(&server, &ca, token));
            path
        };
        // The flags of a component's own HTTPS endpoint (delegated authn/authz).
        let serving = |kubeconfig: &Path| -> Vec<String> {
            vec![
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()),
                format!("--authentication-kubeconfig={}", kubeconfig.display()),
                format!("--authorization-kubeconfig={}", kubeconfig.display()),
                "--v=1".into(),
            ]
        };
        let admin_kubeconfig = kubeconfig_for("admin", ADMIN_TOKEN);
        wait_api_ready("", &server, &ca, Duration::from_secs(90), &mut procs);

        if !full {
            eprintln!(
                "API server ready in {:.1}s at {server}",
                started.elapsed().as_secs_f64()
            );
            return ControlPlane {
                bin,
                kubeconfig: admin_kubeconfig,
                server,
                procs,
                dir,
                etcd,
                api_args,
            };
        }
        // kube-scheduler: the bin-packing profile plus the upstream default profile.
        let sched_kubeconfig = kubeconfig_for("scheduler", "stowage-test-scheduler");
        let sched_config = d.join("scheduler-config.yaml");
        write(&sched_config, &scheduler_config(&sched_kubeconfig));
        procs.push(Supervised::spawn(
            "kube-scheduler",
            &d,
            &bin.join("kube-scheduler"),
            &[
                vec![format!("--config={}", sched_config.display())],
                serving(&sched_kubeconfig),
            ]
            .concat(),
        ));

        let kcm_kubeconfig = kubeconfig_for("kcm", "stowage-test-kcm");
        procs.push(Supervised::spawn(
            "kube-controller-manager",
            &d,
            &bin.join("kube-controller-manager"),
            &[
                serving(&kcm_kubeconfig),
                vec![
                    format!("--kubeconfig={}", kcm_kubeconfig.display()),
                    format!("--controllers={}", CONTROLLERS.join(",")),
                    "--use-service-account-credentials=true".into(),
                    format!("--service-account-private-key-file={}", sa_key.display()),
                    format!("--root-ca-file={}", ca.display()),
                    "--leader-elect=false".into(),
                ],
            ]
            .concat(),
        ));

        let kwok_kubeconfig = kubeconfig_for("kwok", "stowage-test-kwok");
        procs.push(Supervised::spawn(
            "kwok",
            &d,
            &bin.join("kwok"),
            &[
                format!("--kubeconfig={}", kwok_kubeconfig.display()),
                format!("--config={}", bin.join("kwok-stages.yaml").display()),
                "--manage-all-nodes=false".into(),
                format!("--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake"),
                "--cidr=10.0.0.1/16".into(),
                "--node-ip=127.0.0.1".into(),
                format!("--server-address=127.0.0.1:{}", free_port()),
            ],
        ));

        let mut plane = ControlPlane {
            bin,
            kubeconfig: admin_kubeconfig,
            server,
            procs,
            dir,
            etcd,
            api_args,
        };
        plane.wait_ready(started);
        plane
    }

    /// Stops kube-apiserver, writes to etcd behind its back and compacts etcd's history there,
    /// then starts kube-apiserver again: every watch reconnects with a resourceVersion older
    /// than the compacted revision and is answered 410 Gone, so every watcher lists again.
    /// Returns the revision compacted at.
    pub fn restart_api_server_compacted(&mut self) -> u64 {
        let api = self.procs.remove(1);
        drop(api);
        let gateway = |call: &str, body: &str| -> serde_json::Value {
            let url = format!("{}/v3/{call}", self.etcd);
            // A physical compaction of a large history takes longer than curl's usual 2 s.
            let out = curl(&["-s", "--max-time", "300", "-X", "POST", &url, "-d", body])
                .unwrap_or_else(|| panic!("etcd {call}: no answer"));
            let answer: serde_json::Value =
                serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcd {call}: {e}: {out}"));
            assert!(
                answer.get("error").is_none() && answer.get("code").is_none(),
                "etcd {call}: {out}"
            );
            answer
        };
        // "/stowage-scale/relist" = "x", base64 (the JSON gateway takes bytes so).
        let put = gateway(
            "kv/put",
            r#"{"key": "L3N0b3dhZ2Utc2NhbGUvcmVsaXN0", "value": "eA=="}"#,
        );
        let revision: u64 = put["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("etcd put answered no revision: {put}"));
        gateway(
            "kv/compaction",
            &format!(r#"{{"revision": "{revision}", "physical": true}}"#),
        );
        let started = Instant::now();
        self.procs.insert(
            1,
            Supervised::spawn(
                "kube-apiserver",
                &self.dir.0,
                &self.bin.join("kube-apiserver"),
                &self.api_args,
            ),
        );
        let mut procs = std::mem::take(&mut self.procs);
        let ca = self.dir.0.join("ca.crt");
        let (server, limit) = (&self.server, Duration::from_secs(180));
        wait_api_ready(" after its restart", server, &ca, limit, &mut procs);
        self.procs = procs;
        eprintln!(
            "API server restarted in {:.1}s, etcd compacted at revision {revision}",
            started.elapsed().as_secs_f64()
        );
        revision
    }

    /// Ready when the scheduler holds its lease and the controller manager has made the
    /// default service account.
    fn wait_ready(&mut self, started: Instant) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let lease = self.kubectl_output(&[
                "get",
                "lease",
                "-n",
                "kube-system",
                "kube-scheduler",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ]);
            let sa = self.kubectl_output(&[
                "get",
                "serviceaccount",
                "default",
                "-n",
                "default",
                "-o",
                "name",
            ]);
            if lease.is_some_and(|h| !h.trim().is_empty()) && sa.is_some() {
                eprintln!(
                    "control plane ready in {:.1}s at {}",
                    started.elapsed().as_secs_f64(),
                    self.server
                );
                return;
            }
            for p in self.procs.iter_mut() {
                if p.exited() {
                    panic!("{} exited during start-up:\n{}", p.name, p.tail());
                }
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .procs
                    .iter()
                    .map(|p| format!("--- {}:\n{}", p.name, p.tail()))
                    .collect();
                panic!("control plane not ready after 90s\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Runs kubectl with the admin kubeconfig; None when it fails.
    pub fn kubectl_output(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(self.bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs kubectl and panics with its stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        run(Command::new(self.bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args))
    }

    /// Applies objects built with `stowage::demo`'s fixtures, as one List.
    pub fn apply_objects(&self, objects: Vec<serde_json::Value>) {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        self.apply(&list.to_string());
    }

    /// Applies a manifest given as text.
    pub fn apply(&self, manifest: &str) {
        if let Err(e) = self.try_apply(manifest) {
            panic!("kubectl apply failed: {e}");
        }
    }

    /// Applies a manifest; the API server's refusal (kubectl's stderr) when it fails.
    pub fn try_apply(&self, manifest: &str) -> Result<String, String> {
        // Unique per call: tests of one binary apply in parallel (a free port may repeat).
        static APPLIED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = APPLIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.0.join(format!("apply-{n}.yaml"));
        write(&path, manifest);
        let out = Command::new(self.bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(["apply", "-f", &path.display().to_string()])
            .output()
            .expect("kubectl runs");
        let _ = std::fs::remove_file(path);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A kubeconfig of ServiceAccount `name` in a fresh namespace `name`, bound to the
    /// ClusterRole of `charts/stowage/files/clusterrole.yaml` and, in that namespace, the Role
    /// of `role.yaml` (both renamed `name`) unless `bound` is false: what the controller runs
    /// with, so the API server enforces the chart's RBAC on it.
    pub fn service_account_kubeconfig(&self, prefix: &str, bound: bool) -> PathBuf {
        self.service_account_with(prefix, bound.then_some("clusterrole.yaml"), bound)
    }

    /// A kubeconfig of a fresh ServiceAccount bound to the ClusterRole of
    /// `charts/stowage/files/<cluster_role>` (and, with `role`, the Role of `role.yaml`).
    pub fn service_account_with(
        &self,
        prefix: &str,
        cluster_role: Option<&str>,
        role: bool,
    ) -> PathBuf {
        let ns = self.namespace(prefix);
        // Unique per call: tests of one binary run in parallel.
        let name = ns.as_str();
        self.kubectl(&["create", "serviceaccount", name, "-n", &ns]);
        if let Some(file) = cluster_role {
            let path = format!("charts/stowage/files/{file}");
            let text = std::fs::read_to_string(&path).expect(&path);
            let role = with_name(&text, name);
            self.apply(&role);
            self.kubectl(&[
                "create",
                "clusterrolebinding",
                name,
                &format!("--clusterrole={name}"),
                &format!("--serviceaccount={ns}:{name}"),
            ]);
        }
        if role {
            let role = std::fs::read_to_string("charts/stowage/files/role.yaml")
                .expect("charts/stowage/files/role.yaml")
                .replace(
                    "  name: stowage\n",
                    &format!("  name: {name}\n  namespace: {ns}\n"),
                );
            self.apply(&role);
            self.kubectl(&[
                "create",
                "rolebinding",
                name,
                "-n",
                &ns,
                &format!("--role={name}"),
                &format!("--serviceaccount={ns}:{name}"),
            ]);
        }
        self.token_kubeconfig(&ns, name)
    }

    /// A kubeconfig of the existing ServiceAccount `ns/name` (a token of an hour), named
    /// `<ns>.kubeconfig`.
    pub fn token_kubeconfig(&self, ns: &str, name: &str) -> PathBuf {
        let token = self.kubectl(&["create", "token", name, "-n", ns, "--duration=1h"]);
        let path = self.dir.0.join(format!("{ns}.kubeconfig"));
        write(
            &path,
            &kubeconfig(&self.server, &self.dir.0.join("ca.crt"), token.trim()),
        );
        path
    }

    /// Installs stowage's ConsolidationPolicy CRD (idempotent) and waits until it is served.
    pub fn install_crd(&self) {
        // Once per binary: its tests run in parallel.
        static APPLIED: std::sync::Once = std::sync::Once::new();
        APPLIED.call_once(|| self.apply(&stowage::k8s::crd::definition_yaml()));
        wait_until("the CRD is Established", Duration::from_secs(30), || {
            self.kubectl_output(&[
                "get",
                "crd",
                "consolidationpolicies.stowage.io",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ])
            .is_some_and(|s| s == "True")
        });
    }

    /// The Events about `node`, a line each: `reason: note`.
    pub fn node_events(&self, node: &str) -> String {
        self.kubectl(&[
            "get",
            "events.events.k8s.io",
            "-A",
            "--field-selector",
            &format!("regarding.kind=Node,regarding.name={node}"),
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.note}{\"\\n\"}{end}",
        ])
    }

    /// How many pods of namespace `ns` are Running.
    pub fn running_pods(&self, ns: &str) -> usize {
        self.running_pods_named(ns, "")
    }

    /// How many pods of namespace `ns` whose name contains `part` are Running.
    pub fn running_pods_named(&self, ns: &str, part: &str) -> usize {
        self.kubectl_output(&[
            "get",
            "pods",
            "-n",
            ns,
            "--field-selector=status.phase=Running",
            "-o",
            "name",
        ])
        .map_or(0, |s| s.lines().filter(|l| l.contains(part)).count())
    }

    /// A fresh namespace for one test.
    pub fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", free_port());
        self.kubectl(&["create", "namespace", &name]);
        name
    }

    /// A kube client with admin rights.
    pub async fn client(&self) -> kube::Client {
        install_crypto_provider();
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kubeconfig");
        kube::Client::try_from(config).expect("client")
    }
}

/// A role's manifest with its `metadata.name` replaced by `name`.
fn with_name(manifest: &str, name: &str) -> String {
    manifest
        .lines()
        .map(|l| match l.strip_prefix("  name: ") {
            Some(_) => format!("  name: {name}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// kube's rustls (ring) and the AWS SDK's (aws-lc) are both linked into the tests: pick one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["--max-time", "2"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The scheduler configuration of the test control plane.
/// The scheduler configuration of the test control plane: the users' bin-packing profile, the
/// upstream default profile, and `ratio-scheduler`, a RequestedToCapacityRatio profile with
/// unequal weights that scores with BalancedAllocation too (so every strategy meets the real
/// scheduler). Tests parse this same text with stowage's own configuration reader.
pub fn scheduler_config(kubeconfig: &Path) -> String {
    format!(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: {}
  qps: 100
  burst: 200
leaderElection:
  leaderElect: true
  resourceNamespace: kube-system
  resourceName: kube-scheduler
percentageOfNodesToScore: 100
profiles:
  - schedulerName: {BIN_PACKING_PROFILE}
    pluginConfig:
      - name: NodeResourcesFit
        args:
          apiVersion: kubescheduler.config.k8s.io/v1
          kind: NodeResourcesFitArgs
          scoringStrategy:
            type: MostAllocated
            resources:
              - name: cpu
                weight: 1
              - name: memory
                weight: 1
    plugins:
      score:
        enabled:
          - name: NodeResourcesFit
            weight: 1
        disabled:
          - name: "*"
      multiPoint:
        enabled:
          - name: NodeResourcesFit
            weight: 1
  - schedulerName: default-scheduler
  - schedulerName: ratio-scheduler
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: RequestedToCapacityRatio
            resources: [{{name: cpu, weight: 3}}, {{name: memory, weight: 1}}]
            requestedToCapacityRatio:
              shape: [{{utilization: 0, score: 0}}, {{utilization: 60, score: 9}}, {{utilization: 100, score: 4}}]
    plugins:
      score:
        disabled: [{{name: "*"}}]
        enabled: [{{name: NodeResourcesFit, weight: 2}}, {{name: NodeResourcesBalancedAllocation, weight: 1}}]
"#,
        kubeconfig.display()
    )
}

/// The client configuration of a ServiceAccount `<prefix>-…` bound to the chart's ClusterRole
/// and Role (what the controller runs as).
pub async fn chart_config(cp: &ControlPlane, prefix: &str) -> kube::Config {
    let path = cp.service_account_kubeconfig(prefix, true);
    let file = kube::config::Kubeconfig::read_from(&path).unwrap();
    kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap()
}

/// Runs `test` on a two-worker runtime (the controller's shape), rustls' provider installed.
pub fn block_on<F: std::future::Future>(test: F) -> F::Output {
    install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

/// An index fed by watchers of every kind the planner reads, once each has listed its kind
/// (at most 60 s).
pub async fn synced_index(
    client: kube::Client,
) -> std::sync::Arc<std::sync::Mutex<stowage::k8s::index::ClusterIndex>> {
    let index = std::sync::Arc::new(std::sync::Mutex::new(
        stowage::k8s::index::ClusterIndex::new(),
    ));
    tokio::time::timeout(
        Duration::from_secs(60),
        stowage::k8s::watch::watch_all(client, index.clone(), std::sync::Arc::new(|| {})),
    )
    .await
    .expect("every kind synced within 60 s");
    index
}

/// A controller running as the chart's ServiceAccount (`<prefix>-…`), with the default
/// profiles, and its index synced by watchers.
pub async fn chart_controller(
    cp: &ControlPlane,
    prefix: &str,
) -> (
    stowage::controller::reconcile::Reconciler<stowage::k8s::writer::ApiWriter>,
    std::sync::Arc<std::sync::Mutex<stowage::k8s::index::ClusterIndex>>,
) {
    use stowage::scoring::{Profiles, SchedulerVersion};
    let config = chart_config(cp, prefix).await;
    let client = kube::Client::try_from(config.clone()).unwrap();
    let index = synced_index(client.clone()).await;
    let ctl = stowage::controller::reconcile::Reconciler::new(
        client,
        stowage::k8s::act::eviction_client(config).unwrap(),
        Profiles::defaults(SchedulerVersion::V1_36),
    );
    (ctl, index)
}
