fn main() {
    eprintln!("vipd: the daemon and CLI arrive with the control-plane issues");
    std::process::exit(2);
}
