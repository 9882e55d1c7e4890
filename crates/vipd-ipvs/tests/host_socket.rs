//! Smoke test against the host kernel's real netlink: opens the socket and resolves the
//! family through nlctrl. Hosts without IPVS (like the build machines) answer ENOENT, which
//! must surface as `Error::FamilyNotFound`; with IPVS loaded only read-only calls are made.

use vipd_ipvs::{Client, Error};

#[test]
fn connect_on_the_host_kernel() {
    match Client::connect() {
        Ok(mut ipvs) => {
            assert_ne!(ipvs.family_id(), 0);
            match ipvs.info() {
                Ok(info) => assert_ne!(info.version, 0),
                // Not root: GENL_ADMIN_PERM.
                Err(e) => assert_eq!(e.errno(), Some(libc::EPERM), "{e}"),
            }
        }
        Err(Error::FamilyNotFound) => {}
        // A sandbox without netlink sockets.
        Err(Error::Io(e)) => eprintln!("netlink unavailable here: {e}"),
        Err(e) => panic!("unexpected error: {e:?}"),
    }
}
