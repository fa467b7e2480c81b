//! A 3-member etcd cluster on loopback ports of its own, for the tests that kill, stop
//! and restart members. Its processes are stopped by their PIDs when it is dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A cluster of real `etcd` processes in a temporary directory.
pub struct Cluster {
    dir: tempfile::TempDir,
    base: u16,
    extra: Vec<String>,
    members: Vec<Option<Child>>,
}

impl Cluster {
    /// Starts `count` members answering clients on `base + 1 …` (peers on `base + 11 …`),
    /// with `extra` flags, and waits until they have a leader. `None` after saying loudly
    /// that `test` is skipped when `etcd` is not installed; under CI that fails instead.
    pub fn start(test: &str, base: u16, count: usize, extra: &[&str]) -> Option<Cluster> {
        let installed = Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            assert!(
                !super::under_ci(),
                "{test}: etcd is required under CI=true (apt-get install etcd-server)"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED {test}: etcd is not installed (apt-get install etcd-server etcd-client).\n"
            );
            return None;
        }
        let mut cluster = Cluster {
            dir: tempfile::tempdir().expect("temp dir"),
            base,
            extra: extra.iter().map(|flag| (*flag).to_owned()).collect(),
            members: (0..count).map(|_| None).collect(),
        };
        for member in 0..count {
            cluster.start_member(member);
        }
        cluster.wait_for_leader(Duration::from_secs(30));
        Some(cluster)
    }

    /// The client address of `member`.
    pub fn endpoint(&self, member: usize) -> String {
        format!("127.0.0.1:{}", self.base + 1 + member as u16)
    }

    /// The store URL with its members in `order`, the key prefix `prefix`, and `query`.
    pub fn url(&self, order: &[usize], prefix: &str, query: &str) -> String {
        let endpoints: Vec<String> = order.iter().map(|&member| self.endpoint(member)).collect();
        let separator = if query.is_empty() { "" } else { "?" };
        format!("etcd://{}/{prefix}{separator}{query}", endpoints.join(","))
    }

    /// The store URL with every member, in order.
    pub fn url_all(&self, prefix: &str) -> String {
        let order: Vec<usize> = (0..self.members.len()).collect();
        self.url(&order, prefix, "")
    }

    /// Starts `member` (again, on its data directory, after [`kill`](Self::kill)).
    pub fn start_member(&mut self, member: usize) {
        let peer = |m: usize| format!("http://127.0.0.1:{}", self.base + 11 + m as u16);
        let initial: Vec<String> = (0..self.members.len())
            .map(|m| format!("m{m}={}", peer(m)))
            .collect();
        let client = format!("http://{}", self.endpoint(member));
        let log = std::fs::File::create(self.dir.path().join(format!("m{member}.log")))
            .expect("log file");
        let child = Command::new("etcd")
            .args(["--name", &format!("m{member}")])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("m{member}")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args(["--listen-peer-urls", &peer(member)])
            .args(["--initial-advertise-peer-urls", &peer(member)])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                &format!("eventkv-test-{}", self.base),
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[member] = Some(child);
    }

    /// Kills `member` with SIGKILL, by its PID.
    pub fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.members[member].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) `member`: a member that answers nothing.
    pub fn signal(&self, member: usize, signal: &str) {
        let child = self.members[member].as_ref().expect("a running member");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {}", child.id());
    }

    /// The member that leads, as the running members see it.
    pub fn leader(&self) -> Option<usize> {
        let endpoints: Vec<String> = (0..self.members.len())
            .filter(|&m| self.members[m].is_some())
            .map(|m| self.endpoint(m))
            .collect();
        let output = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &endpoints.join(","), "--command-timeout=1s"])
            .args(["endpoint", "status", "-w", "fields"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        // One block of fields per endpoint; the leader's MemberID is its Leader.
        for block in text.split("\n\n") {
            let field = |name: &str| {
                block.lines().find_map(|line| {
                    line.strip_prefix(&format!("\"{name}\" : "))
                        .map(|value| value.trim_matches('"').to_owned())
                })
            };
            if let (Some(member), Some(leader), Some(endpoint)) =
                (field("MemberID"), field("Leader"), field("Endpoint"))
                && member == leader
            {
                return (0..self.members.len()).find(|&m| self.endpoint(m) == endpoint);
            }
        }
        None
    }

    /// Waits until a leader is known (at most `within`).
    pub fn wait_for_leader(&self, within: Duration) -> usize {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.leader() {
                return leader;
            }
            assert!(
                started.elapsed() < within,
                "no leader within {within:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in 0..self.members.len() {
            if let Some(child) = &self.members[member] {
                // A stopped member must be resumed to die.
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
            self.kill(member);
        }
    }
}
