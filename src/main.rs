//! The `tandem` command line: parses arguments, calls the library, maps
//! errors to exit codes (0 ok, 1 invalid config or failed command, 2 usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tandem::logging::LogFormat;

// The proxy allocates and frees small buffers and header maps on every
// request from several threads; mimalloc's thread-local free lists make
// that markedly cheaper than glibc's malloc (benches/l7.sh).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG: &str = "/etc/tandem/tandem.toml";

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "High-availability load balancer: VRRP virtual IPs and an L4/L7 proxy in one daemon"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground (systemd style, logs to stderr).
    Run {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a config file: exit 0, or print every error and exit 1.
    Check {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show listeners, pools and backends of the running daemon.
    Status {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Admin socket (default: global.admin_socket from the config).
        #[arg(short, long)]
        socket: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Remove this node's virtual IPs from their interfaces (systemd
    /// ExecStopPost: a dead daemon must not leave an address answering ARP).
    Cleanup {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Take a backend out of service or change its weight, at runtime.
    Backend {
        #[command(subcommand)]
        op: BackendOp,
        #[arg(short, long, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        #[arg(short, long, global = true)]
        socket: Option<PathBuf>,
    },
    /// Change a VRRP instance at runtime (maintenance switchover).
    Vrrp {
        #[command(subcommand)]
        op: VrrpOp,
        #[arg(short, long, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        #[arg(short, long, global = true)]
        socket: Option<PathBuf>,
    },
    /// Convert a keepalived.conf and/or a haproxy.cfg into a tandem.toml
    /// (validated like `check`); the summary goes to stderr.
    Import {
        /// keepalived.conf to convert (VRRP instances, IPVS virtual servers).
        #[arg(long, value_name = "FILE", required_unless_present = "haproxy")]
        keepalived: Option<PathBuf>,
        /// haproxy.cfg to convert (frontends, backends, listen sections).
        #[arg(long, value_name = "FILE")]
        haproxy: Option<PathBuf>,
        /// Write the result here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Withdraw (drain) or re-announce (enable) an [[anycast]] address at runtime.
    Anycast {
        #[command(subcommand)]
        op: AnycastOp,
        #[arg(short, long, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        #[arg(short, long, global = true)]
        socket: Option<PathBuf>,
    },
    /// Print the tandem(8) man page (roff) generated from this CLI.
    #[command(hide = true)]
    Manpage,
    /// Ask the running daemon to reload its config (like SIGHUP, but reports errors).
    Reload {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(short, long)]
        socket: Option<PathBuf>,
    },
    /// Upgrade in place: the running daemon starts the binary now installed at
    /// its path, hands it every listening socket and VRRP role, then drains
    /// its own connections and exits. No connection is lost, the VIPs stay.
    Upgrade {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(short, long)]
        socket: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BackendOp {
    /// No new connections; open ones finish (status shows how many remain).
    Drain { target: String },
    /// Back in service.
    Enable { target: String },
    /// No new connections; open ones are closed after the grace period.
    Disable {
        target: String,
        #[arg(long, default_value = "10s")]
        grace: String,
    },
    /// Set the weight (1..=256), or `config` for the configured one.
    Weight { target: String, weight: String },
}

#[derive(Subcommand)]
enum AnycastOp {
    /// Withdraw the route; the listeners keep serving what still arrives.
    Drain { name: String },
    /// Announce again (once the pools are healthy).
    Enable { name: String },
}

#[derive(Subcommand)]
enum VrrpOp {
    /// Set the priority (1..=255), or `config` for the configured one. Lower
    /// it below the peer's for a planned switchover.
    Priority { instance: String, priority: String },
}

/// `POOL/BACKEND` → the admin API path prefix.
fn backend_path(target: &str) -> Result<String, String> {
    match target.split_once('/') {
        Some((p, b)) if !p.is_empty() && !b.is_empty() => Ok(format!("/v1/backends/{p}/{b}")),
        _ => Err(format!("{target:?}: write POOL/BACKEND, e.g. web/web1")),
    }
}

fn print_result(code: u16, body: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if code == 200 {
        println!("{}", v["message"].as_str().unwrap_or(body));
        Ok(())
    } else {
        Err(v["error"].as_str().unwrap_or(body).to_string())
    }
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    // The reported version includes a build tag patched into the binary.
    let version: &'static str = Box::leak(tandem::version().into_boxed_str());
    let cli = match Cli::from_arg_matches(&Cli::command().version(version).get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.cmd {
        Cmd::Run { config, log_format } => run(config, log_format),
        Cmd::Check { config, json } => check(config, json),
        Cmd::Cleanup { config } => cleanup(config),
        Cmd::Manpage => manpage(),
        Cmd::Import {
            keepalived,
            haproxy,
            output,
        } => import(keepalived, haproxy, output),
        Cmd::Backend { op, config, socket } => {
            let (target, method, action, body) = match &op {
                BackendOp::Drain { target } => (target, "POST", "drain", None),
                BackendOp::Enable { target } => (target, "POST", "enable", None),
                BackendOp::Disable { target, grace } => (
                    target,
                    "POST",
                    "disable",
                    Some(serde_json::json!({ "grace": grace }).to_string()),
                ),
                BackendOp::Weight { target, weight } => {
                    let w = if weight == "config" {
                        serde_json::Value::Null
                    } else {
                        match weight.parse::<u32>() {
                            Ok(w) => serde_json::json!(w),
                            Err(_) => {
                                eprintln!("tandem: weight must be 1..=256 or `config`");
                                return ExitCode::from(2);
                            }
                        }
                    };
                    (
                        target,
                        "PUT",
                        "weight",
                        Some(serde_json::json!({ "weight": w }).to_string()),
                    )
                }
            };
            let path = match backend_path(target) {
                Ok(p) => format!("{p}/{action}"),
                Err(e) => {
                    eprintln!("tandem: {e}");
                    return ExitCode::from(2);
                }
            };
            admin_call_body(&config, socket, method, &path, body, print_result)
        }
        Cmd::Anycast { op, config, socket } => {
            let (name, action) = match &op {
                AnycastOp::Drain { name } => (name, "drain"),
                AnycastOp::Enable { name } => (name, "enable"),
            };
            admin_call_body(
                &config,
                socket,
                "POST",
                &format!("/v1/anycast/{name}/{action}"),
                None,
                print_result,
            )
        }
        Cmd::Vrrp { op, config, socket } => match op {
            VrrpOp::Priority { instance, priority } => {
                let p = if priority == "config" {
                    serde_json::Value::Null
                } else {
                    match priority.parse::<u8>() {
                        Ok(p) if p >= 1 => serde_json::json!(p),
                        _ => {
                            eprintln!("tandem: priority must be 1..=255 or `config`");
                            return ExitCode::from(2);
                        }
                    }
                };
                admin_call_body(
                    &config,
                    socket,
                    "PUT",
                    &format!("/v1/vrrp/{instance}/priority"),
                    Some(serde_json::json!({ "priority": p }).to_string()),
                    print_result,
                )
            }
        },
        Cmd::Status {
            config,
            socket,
            json,
        } => admin_call(&config, socket, "GET", "/v1/status", |code, body| {
            if code != 200 {
                return Err(body.to_string());
            }
            if json {
                println!("{body}");
                return Ok(());
            }
            let s: tandem::admin::status::Status =
                serde_json::from_str(body).map_err(|e| format!("bad status document: {e}"))?;
            print!("{}", s.render());
            Ok(())
        }),
        Cmd::Upgrade { config, socket } => {
            admin_call(&config, socket, "POST", "/v1/upgrade", |code, body| {
                let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                if code == 200 {
                    println!("{}", v["message"].as_str().unwrap_or(body));
                    Ok(())
                } else {
                    Err(format!(
                        "upgrade refused, the running daemon keeps serving:\n{}",
                        v["error"].as_str().unwrap_or(body)
                    ))
                }
            })
        }
        Cmd::Reload { config, socket } => {
            admin_call(&config, socket, "POST", "/v1/reload", |code, body| {
                let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                if code == 200 {
                    println!("reloaded (generation {})", v["generation"]);
                    let changes = v["changes"].as_array().cloned().unwrap_or_default();
                    if changes.is_empty() {
                        println!("  no change");
                    }
                    for c in changes.iter().filter_map(|c| c.as_str()) {
                        println!("  {c}");
                    }
                    Ok(())
                } else {
                    let errs = v["errors"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|e| e.as_str())
                                .collect::<Vec<_>>()
                                .join("\n")
                        })
                        .unwrap_or_else(|| body.to_string());
                    Err(format!(
                        "reload rejected, the running config is unchanged:\n{errs}"
                    ))
                }
            })
        }
    }
}

fn run(config: PathBuf, log_format: LogFormat) -> ExitCode {
    // Started by `tandem upgrade`: take the old process's sockets and state
    // first, so every refusal below reaches it.
    let handoff = match tandem::runtime::upgrade::Handoff::from_env() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tandem: upgrade hand-over failed: {e}");
            return ExitCode::from(1);
        }
    };
    let refuse = |msg: &str| {
        eprintln!("{msg}");
        if let Some(h) = &handoff {
            h.refuse(msg);
        }
        ExitCode::from(1)
    };
    let cfg = match tandem::preflight::load(&config) {
        Ok(c) => c,
        Err(e) => {
            return refuse(&format!(
                "{e}\ntandem: not starting: {} has errors",
                config.display()
            ))
        }
    };
    tandem::logging::init(log_format, &cfg.global.log_level);
    let missing = tandem::caps::preflight(&cfg);
    if !missing.is_empty() {
        for m in &missing {
            tracing::error!("{m}");
        }
        return refuse(&missing.join("\n"));
    }
    let workers = if cfg.global.workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.global.workers
    };
    // The data plane runs on its own per-core workers; this runtime is the
    // control plane (config, reload, health checks, admin, metrics).
    if let Err(e) = tandem::dataplane::worker::start(workers) {
        return refuse(&format!("tandem: cannot start workers: {e}"));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tandem-control")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return refuse(&format!("tandem: cannot start runtime: {e}")),
    };
    match rt.block_on(tandem::runtime::run_until_signalled(&config, cfg, handoff)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tandem failed to start");
            eprintln!("tandem: {e}");
            ExitCode::from(1)
        }
    }
}

fn manpage() -> ExitCode {
    use clap::CommandFactory;
    let cmd = Cli::command().name("tandem");
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("System Administration")
        .source(format!("tandem {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    // Our own COMMANDS section replaces clap's list of per-command pages,
    // which the package does not ship.
    let rendered = man
        .render_title(&mut out)
        .and_then(|_| man.render_name_section(&mut out))
        .and_then(|_| man.render_synopsis_section(&mut out))
        .and_then(|_| man.render_description_section(&mut out))
        .and_then(|_| man.render_options_section(&mut out));
    if let Err(e) = rendered {
        eprintln!("tandem: {e}");
        return ExitCode::from(1);
    }
    // The generated page covers the commands; add what an operator needs
    // next: files, signals and where the configuration is documented.
    out.extend_from_slice(MAN_EXTRA.as_bytes());
    if std::io::Write::write_all(&mut std::io::stdout(), &out).is_err() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

const MAN_EXTRA: &str = r#".SH COMMANDS
.TP
\fBrun\fR \-c FILE [\-\-log\-format text|json]
Run the daemon in the foreground (systemd Type=notify).
.TP
\fBcheck\fR \-c FILE [\-\-json]
Validate a configuration; print every error as FILE:LINE:COL: key.path: message and exit 1.
.TP
\fBstatus\fR [\-c FILE | \-s SOCKET] [\-\-json]
Show VRRP instances, listeners, pools and backends of the running daemon.
.TP
\fBreload\fR [\-c FILE | \-s SOCKET]
Re-read the configuration; an invalid file changes nothing and its errors are printed.
.TP
\fBupgrade\fR [\-c FILE | \-s SOCKET]
Upgrade in place: the running daemon starts the binary now installed at its path, hands it every listening socket, VRRP role and runtime backend state, then drains its own connections and exits (no priority 0 advert, the virtual IPs stay). If the new process refuses (invalid configuration, a binary that does not start), the running daemon keeps serving and the reason is printed. The package runs this on upgrade; \fBsystemctl reload\fR stays a configuration reload.
.TP
\fBimport\fR [\-\-keepalived FILE] [\-\-haproxy FILE] [\-o FILE]
Convert keepalived and HAProxy configurations into a checked tandem.toml; print what was imported, approximated and left out.
.TP
\fBcleanup\fR \-c FILE
Remove this node's virtual IP addresses (run by systemd after every exit).
.PP
The configuration file defaults to /etc/tandem/tandem.toml; \fBstatus\fR, \fBreload\fR and \fBupgrade\fR find the admin socket through it unless \-s is given.
.SH SIGNALS
.TP
SIGHUP
Reload the configuration (invalid files are logged and ignored).
.TP
SIGTERM, SIGINT
Hand virtual IPs over to the peer (priority 0 advert, make\-before\-break), stop accepting, drain connections for up to global.shutdown_timeout, exit 0.
.SH FILES
.TP
/etc/tandem/tandem.toml
The configuration.
.TP
/usr/share/doc/tandem/examples/
reference.toml documents every option; active\-passive, active\-active and L4\-only examples.
.TP
/run/tandem/admin.sock
The admin API (HTTP/JSON, mode 0660).
.SH EXIT STATUS
0 on success, 1 on an invalid configuration or a failed command, 2 on a usage error.
"#;

fn import(
    keepalived: Option<PathBuf>,
    haproxy: Option<PathBuf>,
    output: Option<PathBuf>,
) -> ExitCode {
    let out_name = output.clone().unwrap_or_else(tandem::import::stdout_name);
    let imported =
        match tandem::import::import(keepalived.as_deref(), haproxy.as_deref(), &out_name) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("tandem import: {e}");
                return ExitCode::from(1);
            }
        };
    match &output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, &imported.toml) {
                eprintln!("tandem import: cannot write {}: {e}", p.display());
                return ExitCode::from(1);
            }
        }
        None => print!("{}", imported.toml),
    }
    eprint!("{}", imported.report.render());
    eprintln!(
        "{}: ok ({} listeners, {} pools, {} vrrp instances)",
        out_name.display(),
        imported.listeners,
        imported.pools,
        imported.vrrp
    );
    ExitCode::SUCCESS
}

fn cleanup(config: PathBuf) -> ExitCode {
    let cfg = match tandem::preflight::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(1);
        }
    };
    let all = rt.block_on(async {
        let mut removed = tandem::vrrp::service::cleanup(&cfg.vrrp).await?;
        removed.extend(tandem::anycast::cleanup(&cfg.anycast).await?);
        Ok::<_, tandem::net::NetError>(removed)
    });
    match all {
        Ok(removed) => {
            for r in removed {
                println!("{r}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem cleanup: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(config: PathBuf, json: bool) -> ExitCode {
    match tandem::preflight::load(&config) {
        Ok(c) => {
            if json {
                println!("{}", serde_json::json!({ "ok": true, "errors": [] }));
            } else {
                println!(
                    "{}: ok ({} listeners, {} pools, {} vrrp instances)",
                    config.display(),
                    c.listeners.len(),
                    c.pools.len(),
                    c.vrrp.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "ok": false, "errors": e.0 }));
            } else {
                eprintln!("{e}");
            }
            ExitCode::from(1)
        }
    }
}

/// Resolves the admin socket (flag, else the config's, else the default)
/// and runs one request.
fn admin_call(
    config: &std::path::Path,
    socket: Option<PathBuf>,
    method: &str,
    path: &str,
    handle: impl FnOnce(u16, &str) -> Result<(), String>,
) -> ExitCode {
    admin_call_body(config, socket, method, path, None, handle)
}

fn admin_call_body(
    config: &std::path::Path,
    socket: Option<PathBuf>,
    method: &str,
    path: &str,
    body: Option<String>,
    handle: impl FnOnce(u16, &str) -> Result<(), String>,
) -> ExitCode {
    let socket = socket.unwrap_or_else(|| {
        tandem::preflight::load(config)
            .map(|c| c.global.admin_socket)
            .unwrap_or_else(|_| PathBuf::from("/run/tandem/admin.sock"))
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(tandem::admin::client::request(&socket, method, path, body)) {
        Ok((code, body)) => match handle(code, &body) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::from(1)
        }
    }
}
