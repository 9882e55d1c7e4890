//! The signals the daemon acts on (SIGHUP: reload; SIGTERM, SIGINT: stop) are held
//! (blocked) from the first instruction of `main` until the daemon's start-up is done.
//! Held, a SIGHUP cannot kill vipd before its handler exists (its default action), and
//! no signal interrupts the start-up's system calls: the kernel's BPF verifier gives up
//! with EAGAIN when a signal is pending for the loading thread, so a `systemctl reload`
//! racing the start would otherwise fail it. Once released, a signal sent meanwhile is
//! delivered to its handler and acted on by the loop. Threads started during start-up
//! inherit the block and keep it, so the signals go to the daemon's thread.

const SIGNALS: [libc::c_int; 3] = [libc::SIGHUP, libc::SIGTERM, libc::SIGINT];

/// Blocks the daemon's signals in the calling thread (and in threads it starts from now
/// on).
pub fn hold() {
    set(libc::SIG_BLOCK);
}

/// Unblocks them in the calling thread: held ones are delivered now.
pub fn release() {
    set(libc::SIG_UNBLOCK);
}

fn set(how: libc::c_int) {
    // SAFETY: a set initialised by sigemptyset, valid signals added, and a null
    // old-set pointer, as pthread_sigmask allows.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}
