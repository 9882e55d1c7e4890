//! The control socket's commands, carried out in the daemon's loop: a reload, and the
//! operator's drain, undrain, quarantine and re-admit. The answer goes back once the
//! weights the command changed are written, so a client that sees "drained" can count on the
//! kernel having weight 0.

use std::{path::Path, time::Duration, time::SystemTime};

use tokio::time::Instant;

use super::{
    super::{
        admin,
        control::{Command, CommandResult},
        control_proto::{Request, CODE_BAD_REQUEST, CODE_FAILED, CODE_NOT_FOUND, CODE_REJECTED},
        core::OperatorAction,
    },
    Shell,
};
use crate::clock;

impl Shell {
    pub(super) async fn command(&mut self, Command { request, reply }: Command) {
        let answer = match request {
            Request::Status => Ok(String::new()),
            Request::Reload { config } => self.reload_command(config.as_deref()).await,
            Request::Drain { service, backend } => {
                self.operator(OperatorAction::Drain, &service, backend)
            }
            Request::Undrain { service, backend } => {
                self.operator(OperatorAction::Undrain, &service, backend)
            }
            Request::Quarantine {
                service,
                backend,
                for_ms,
            } => {
                let duration = for_ms.map(Duration::from_millis);
                self.operator(OperatorAction::Quarantine(duration), &service, backend)
            }
            Request::Readmit { service, backend } => {
                self.operator(OperatorAction::Readmit, &service, backend)
            }
        };
        self.answers.push((reply, answer));
    }

    /// `vipd reload`: the daemon's own config file, which must be `expected` when the
    /// client names one.
    async fn reload_command(&mut self, expected: Option<&str>) -> CommandResult {
        if let Some(expected) = expected {
            let ours = canonical(&self.opts.config);
            if canonical(Path::new(expected)) != ours {
                return Err((
                    CODE_NOT_FOUND,
                    format!(
                        "this vipd runs {}, not {expected}; nothing was reloaded",
                        self.opts.config.display()
                    ),
                ));
            }
        }
        tracing::info!(
            "reload requested on the control socket: {}",
            self.opts.config.display()
        );
        let accepted = self.reload().await;
        let message = self
            .core
            .last_reload()
            .map(|r| r.message.clone())
            .unwrap_or_default();
        let file = self.opts.config.display();
        if accepted {
            Ok(format!("{file}: reloaded: {message}"))
        } else {
            Err((
                CODE_REJECTED,
                format!("{message}\n{file}: rejected; the running config stays in force"),
            ))
        }
    }

    fn operator(
        &mut self,
        action: OperatorAction,
        service: &str,
        backend: std::net::SocketAddr,
    ) -> CommandResult {
        let target = self
            .core
            .target(service, backend)
            .map_err(|e| (CODE_NOT_FOUND, e))?;
        self.core
            .allowed(action, &target)
            .map_err(|e| (CODE_BAD_REQUEST, e))?;
        let wall = SystemTime::now();
        // A drain is recorded before it takes effect: one that cannot survive a restart
        // is refused, not half done.
        if matches!(action, OperatorAction::Drain | OperatorAction::Undrain) {
            let mut next = self.core.drains().clone();
            let changed = if action == OperatorAction::Drain {
                next.add(&target.name, target.addr(), clock::unix_ms(wall))
            } else {
                next.remove(&target.name, target.addr())
            };
            if changed {
                let path = admin::path(&self.opts.state_file);
                admin::store(&path, &next).map_err(|e| {
                    (
                        CODE_FAILED,
                        format!(
                            "cannot record the {}: {e}; nothing changed",
                            action.as_str()
                        ),
                    )
                })?;
            }
        }
        let message = self.core.operate(action, &target, Instant::now(), wall);
        // Recorded above already.
        self.core.take_drains_dirty();
        Ok(message)
    }
}

/// `path` with symlinks and `..` resolved where it exists, else as given.
fn canonical(path: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}
