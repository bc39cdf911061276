//! Real `redis-server` processes on free loopback ports, in temp dirs, killed on drop.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails (never skips) when a Redis binary is missing.
pub fn require(bin: &str) {
    let found = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{bin}` not found on PATH: these tests need a real Redis \
         (apt-get install -y redis-server)"
    );
}

/// A free loopback port (bound, then released).
use super::ports::free_port;

/// Runs `redis-cli -p PORT ARGS…` and returns its stdout (trimmed).
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One `redis-server`.
pub struct RedisServer {
    pub port: u16,
    extra: Vec<String>,
    /// Arguments put before every `redis-cli` call (TLS, password).
    cli_prefix: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// A plain single node with `DEBUG` enabled.
    pub fn start() -> RedisServer {
        RedisServer::start_with(free_port(), &[])
    }

    /// A node on `port` with extra arguments.
    pub fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        RedisServer::start_full(port, extra, &[])
    }

    /// A node on `port` with extra server arguments and `redis-cli` arguments (TLS, auth).
    pub fn start_full(port: u16, extra: &[&str], cli_prefix: &[&str]) -> RedisServer {
        require("redis-server");
        require("redis-cli");
        let mut s = RedisServer {
            port,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            cli_prefix: cli_prefix.iter().map(|a| a.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .current_dir(self.dir.path())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["ping"]) != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = self.cli_prefix.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        cli(self.port, &all)
    }

    /// SIGKILL and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (empty unless started with persistence arguments).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// SIGSTOP: the process hangs (connections stay open, nothing answers).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Waits until this replica's link to its master is up.
    pub fn wait_replica_synced(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self
            .cli(&["info", "replication"])
            .contains("master_link_status:up")
        {
            assert!(
                Instant::now() < deadline,
                "replica {} never synced",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `count` cluster-enabled nodes (each with `extra` arguments) and joins them with
/// `redis-cli --cluster create`, `replicas` replicas per master. Waiting for the cluster to settle
/// is the caller's.
fn create_cluster(count: usize, replicas: u8, extra: &[&str]) -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..count)
        .map(|_| {
            let bus = free_port().to_string();
            let mut args = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                &bus,
            ];
            args.extend_from_slice(extra);
            RedisServer::start_with(free_port(), &args)
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let replicas = replicas.to_string();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", &replicas, "--cluster-yes"])
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    nodes
}

/// A 3-master Redis Cluster on loopback.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes = create_cluster(3, 0, &["--cluster-node-timeout", "2000"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            while !n.cli(&["cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// `redis-cli -c` against the first node (follows MOVED redirections).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        cli(self.nodes[0].port, &all)
    }
}

/// A 3-master, 3-replica Redis Cluster with a short `cluster-node-timeout`, for failovers.
pub struct ReplicatedCluster {
    /// `nodes[0..3]` start as masters, `nodes[3..6]` as their replicas.
    pub nodes: Vec<RedisServer>,
}

impl ReplicatedCluster {
    pub fn start(node_timeout_ms: u32) -> ReplicatedCluster {
        let timeout = node_timeout_ms.to_string();
        let nodes = create_cluster(
            6,
            1,
            &[
                "--cluster-node-timeout",
                &timeout,
                "--cluster-replica-validity-factor",
                "0",
                // The slots of healthy masters keep answering while one master is down.
                "--cluster-require-full-coverage",
                "no",
            ],
        );
        let c = ReplicatedCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = c
                .nodes
                .iter()
                .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            let synced = c
                .nodes
                .iter()
                .filter(|n| {
                    n.cli(&["info", "replication"])
                        .contains("master_link_status:up")
                })
                .count();
            if ok && synced == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replicated cluster never became ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// The index of the node now serving `key` as master.
    pub fn master_of(&self, key: &str) -> usize {
        let slot: u16 = cli(self.nodes[0].port, &["cluster", "keyslot", key])
            .parse()
            .unwrap();
        self.master_of_slot(slot, None)
    }

    /// The master of `slot` as some node other than `skip` sees it.
    pub fn master_of_slot(&self, slot: u16, skip: Option<usize>) -> usize {
        for (i, n) in self.nodes.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            let slots = n.cli(&["cluster", "slots"]);
            let lines: Vec<&str> = slots.lines().collect();
            // redis-cli prints each range as: start, end, host, port, id, [replica...].
            let mut i2 = 0;
            while i2 + 3 < lines.len() {
                if let (Ok(start), Ok(end)) =
                    (lines[i2].parse::<u16>(), lines[i2 + 1].parse::<u16>())
                    && lines[i2 + 2] == "127.0.0.1"
                    && start <= slot
                    && slot <= end
                {
                    let port: u16 = lines[i2 + 3].parse().unwrap();
                    return self.nodes.iter().position(|n| n.port == port).unwrap();
                }
                i2 += 1;
            }
            return usize::MAX;
        }
        usize::MAX
    }

    /// The replica (index) of master `m`.
    pub fn replica_of(&self, m: usize) -> usize {
        let id = self.nodes[m].cli(&["cluster", "myid"]);
        self.nodes
            .iter()
            .position(|n| {
                n.cli(&["info", "replication"]).contains("role:slave")
                    && n.cli(&["cluster", "nodes"])
                        .lines()
                        .any(|l| l.contains("myself") && l.contains(&id))
            })
            .expect("a replica")
    }
}
