//! The programs stay well within the verifier's limit (a million instructions walked,
//! on every kernel): persistence doubled the paths of the connect and sendmsg hooks, and
//! an older kernel's verifier may walk more than this one's. A bound of 400,000 leaves
//! room; the figures are printed.

use vipd::sockplane::{Sizes, SockProgram};

#[test]
fn every_program_verifies_in_well_under_the_verifiers_limit() {
    let prog = SockProgram::load(Sizes::default(), None).expect("loading the socket plane");
    let counts = prog.verified_instructions();
    for (name, n) in &counts {
        println!("{name}: {n:?} instructions verified");
    }
    for (name, n) in counts {
        let n = n.expect("this kernel reports verified instructions (5.16+)");
        assert!(n < 400_000, "{name}: {n} instructions verified");
    }
}
