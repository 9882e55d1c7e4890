//! Fault injection for tests of the real binary, in debug builds only: `VIPD_FAULT`
//! names one fault, read once. A release build has none of this: [`hit`] is empty.
//!
//! * `panic-in-control-task`: the task that serves a control-socket client panics; with
//!   `panic = "abort"` the whole daemon ends (SIGABRT) and the service manager restarts
//!   it, which the host tests show.

/// The faults a test can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    PanicInControlTask,
}

impl Fault {
    #[cfg(debug_assertions)]
    fn name(self) -> &'static str {
        match self {
            Fault::PanicInControlTask => "panic-in-control-task",
        }
    }
}

/// Where `fault` would strike: panics if the test asked for it.
#[cfg(debug_assertions)]
pub fn hit(fault: Fault) {
    static ASKED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let asked = ASKED.get_or_init(|| std::env::var("VIPD_FAULT").ok());
    if asked.as_deref() == Some(fault.name()) {
        panic!("injected fault (VIPD_FAULT={})", fault.name());
    }
}

#[cfg(not(debug_assertions))]
pub fn hit(_fault: Fault) {}
