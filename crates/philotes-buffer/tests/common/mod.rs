//! A throwaway PostgreSQL cluster for the control database's tests (Debian's PostgreSQL, as the
//! end-to-end tests use; `deployments/scripts/test-env.sh` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::PathBuf;
use std::process::Command;

use philotes_core::Secret;

/// A throwaway PostgreSQL cluster, stopped when dropped.
pub struct Cluster {
    base: PathBuf,
    pub port: u16,
    bin: PathBuf,
    as_user: Vec<String>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed: run deployments/scripts/test-env.sh")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("no initdb under /usr/lib/postgresql");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base =
            std::env::temp_dir().join(format!("philotes-buffer-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        // PostgreSQL refuses to run as root: as root, run it as `postgres`.
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let as_user: Vec<String> = if root {
            Command::new("chown")
                .arg("postgres")
                .arg(&base)
                .status()
                .unwrap();
            ["runuser", "-u", "postgres", "--"]
                .map(String::from)
                .to_vec()
        } else {
            Vec::new()
        };
        let c = Cluster {
            base,
            port,
            bin,
            as_user,
        };
        let data = c.base.join("data");
        c.run(
            &c.bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            c.base.display()
        );
        c.run(
            &c.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                c.base.join("log").to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        c
    }

    fn run(&self, exe: &std::path::Path, args: &[&str]) {
        let mut cmd = if self.as_user.is_empty() {
            Command::new(exe)
        } else {
            let mut c = Command::new(&self.as_user[0]);
            c.args(&self.as_user[1..]).arg(exe);
            c
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{exe:?} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self, user: &str, db: &str) -> Secret {
        Secret::new(format!(
            "postgres://{user}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        ))
    }

    pub async fn admin(&self) -> tokio_postgres::Client {
        self.admin_of("postgres").await
    }

    /// A superuser connection to database `db`.
    pub async fn admin_of(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={db}",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        client
    }

    pub async fn fresh_db(&self, name: &str) -> Secret {
        self.admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.url("postgres", name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.base.join("data");
        let _ = std::panic::catch_unwind(|| {
            self.run(
                &self.bin.join("pg_ctl"),
                &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
            )
        });
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
