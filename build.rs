fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom_build)");
    println!("cargo::rerun-if-env-changed=CARGO_CFG_LOOM");
    if std::env::var_os("CARGO_CFG_LOOM").is_some() {
        println!("cargo::rustc-cfg=loom_build");
    }
}
