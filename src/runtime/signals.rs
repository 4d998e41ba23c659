//! The process's life around the daemon: signals (SIGHUP reload, SIGUSR1 log reopen,
//! SIGTERM/SIGINT stop), sd_notify (READY, RELOADING, STOPPING, MAINPID on upgrade) and
//! the systemd watchdog.

use std::path::Path;

use super::{upgrade, Daemon, StartError};
use crate::config::Config;

/// Waits for SIGHUP/SIGTERM/SIGINT on a plain thread (signal-hook) and
/// forwards them into the async world.
pub fn signals() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut sigs = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("tandem-signals".into())
        .spawn(move || {
            for s in sigs.forever() {
                if tx.send(s).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// Runs the daemon until SIGTERM/SIGINT, or until it hands over to an
/// upgraded process. With `handoff`, this process is that upgraded one.
pub async fn run_until_signalled(
    config_path: &Path,
    cfg: Config,
    handoff: Option<upgrade::Handoff>,
) -> Result<(), StartError> {
    let mut sigs = signals().map_err(|source| StartError::Admin {
        path: "signal handler".into(),
        source,
    })?;
    let daemon = match Daemon::start(config_path, cfg, handoff.as_ref().map(|h| &h.carried)).await {
        Ok(d) => d,
        Err(e) => {
            if let Some(h) = &handoff {
                h.refuse(&e.to_string());
            }
            return Err(e);
        }
    };
    if let Some(h) = handoff {
        let from = h.carried.from_pid;
        // Adverts overlap instead of pausing: the old process goes on
        // advertising until ours are out (our own adverts are ignored by
        // both, the peer just hears the master twice as often for a moment).
        if !crate::vrrp::instance::wait_resumed(std::time::Duration::from_secs(5)).await {
            tracing::warn!("upgrade: a resumed master has not advertised within 5 s; going on");
        }
        match tokio::task::spawn_blocking(move || h.ready().map(|()| h)).await {
            Ok(Ok(h)) => {
                daemon.open();
                h.running();
                tracing::info!(from_pid = from, version = %crate::version(), "upgrade: took over listeners and VRRP roles");
            }
            _ => {
                // The old process gave up on us and keeps serving: leave at
                // once, without resigning or removing an address.
                tracing::error!(from_pid = from, "upgrade aborted by the old process");
                std::process::exit(1);
            }
        }
    }
    // Listeners are bound and VRRP instances initialized: tell systemd.
    crate::sd::notify("READY=1\nSTATUS=running");
    if let Some(every) = crate::sd::watchdog_interval() {
        let d = daemon.clone();
        tokio::spawn(async move {
            // Pinged from the data-plane runtime: a wedged runtime stops
            // the pings and systemd restarts us.
            let mut t = tokio::time::interval(every / 2);
            while !d.retired.is_cancelled() {
                t.tick().await;
                crate::sd::notify("WATCHDOG=1");
            }
        });
    }
    loop {
        let sig = tokio::select! {
            s = sigs.recv() => s,
            _ = daemon.retired() => {
                daemon.retire().await;
                // Let the answer to `tandem upgrade` reach its caller.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                tracing::info!("handed over to the upgraded process: exiting");
                return Ok(());
            }
        };
        let Some(sig) = sig else { break };
        match sig {
            signal_hook::consts::SIGUSR1 => {
                // logrotate's postrotate: new lines go to a fresh file.
                crate::accesslog::reopen_all();
                tracing::info!("SIGUSR1: reopening access logs");
            }
            signal_hook::consts::SIGHUP => {
                tracing::info!("SIGHUP: reloading configuration");
                crate::sd::reloading();
                let status = match daemon.reload().await {
                    Ok((g, _)) => format!("STATUS=running (generation {g})"),
                    Err(e) => format!("STATUS=running; last reload rejected: {}", e.len()),
                };
                crate::sd::notify(&format!("READY=1\n{status}"));
            }
            _ => {
                tracing::info!(signal = sig, "shutting down");
                break;
            }
        }
    }
    crate::sd::notify("STOPPING=1\nSTATUS=handing over and draining");
    daemon.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
