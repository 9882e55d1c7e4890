//! Builds the kernel programs (`vipd-ebpf`) for the BPF target with the stable toolchain:
//! one object per data plane, each of the crate's binaries (`vipd-watch`, `vipd-xdp`),
//! which aya-build copies into OUT_DIR under its binary's name.
//! `-Z build-std=core` needs RUSTC_BOOTSTRAP; it is set here, for that sub-build only,
//! so nobody has to export it. Requires `bpf-linker` (scripts/setup.sh installs it).

fn main() -> anyhow::Result<()> {
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let package = aya_build::Package {
        name: "vipd-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../vipd-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom("stable"))
}
